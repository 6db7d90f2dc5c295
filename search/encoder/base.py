"""The encoder interface: what the rest of the code may ask of a loaded model, whatever runs it."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage


class ModelUnavailable(RuntimeError):
    """The configured model cannot be loaded; the message says why, for a person."""


HUB_HOST = "huggingface.co"


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a connection (a model not on this machine comes from
    there)."""
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def not_here(name: str, setting: str) -> ModelUnavailable:
    """The refusal of a model that is neither a directory nor in the local cache while the hub
    cannot be reached."""
    return ModelUnavailable(
        f"The model {name!r} is not in the local cache and the Hugging Face hub cannot be "
        f"reached. Download it on a machine with network access, or set {setting} to a local "
        "directory."
    )


class Encoder(Protocol):
    """One loaded model (a CLIP with both towers, or a text model), in one runtime.

    Vectors come back as (n, dimension) float32 arrays, not normalised: the package normalises.
    """

    #: "torch" or "onnx".
    runtime: str
    #: Where it runs: the torch device ("cpu", "cuda:0") or the ONNX Runtime execution provider.
    provider: str
    #: "fp32", or "int8" for an ONNX graph with dynamically quantised weights.
    precision: str

    def encode_texts(self, texts: Sequence[str], *, batch_size: int) -> np.ndarray: ...

    def encode_images(self, images: Sequence[PILImage], *, batch_size: int) -> np.ndarray: ...


def normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows (a zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
