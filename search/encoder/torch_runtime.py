"""The torch runtime: a sentence-transformers model run by torch, eager, fp32.

Also the loader the ONNX export starts from (:mod:`search.encoder.export`), so that both
runtimes read one model, from the same name or directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import ModelUnavailable, hub_reachable, not_here

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

logger = logging.getLogger(__name__)


def load_sentence_transformer(name: str, *, device: str, threads: int, setting: str) -> Any:
    """The SentenceTransformer ``name`` (a hub name or a local directory) on ``device``;
    ModelUnavailable saying why when it is not here and the hub cannot be reached."""
    local_dir = os.path.isdir(name)
    if local_dir:
        # A local model must never touch the network (and must not wait minutes for it).
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # OpenMP threads that wait should sleep, not spin: when anything else wants the cores (the
    # web server beside the worker, a second process, another tenant), spinning threads take the
    # cores from the threads with work to do (BENCHMARKS-history.md, "Threads"). Read once, when
    # torch loads libgomp; an explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    check_device(torch, device)
    if local_dir:
        return SentenceTransformer(name, device=device, local_files_only=True)
    try:
        return SentenceTransformer(name, device=device, local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the local cache: try the hub below
        pass
    if not hub_reachable():
        raise not_here(name, setting)
    return SentenceTransformer(name, device=device)


def check_device(torch: Any, device: str) -> None:
    """Refuse, with a reason, a torch device this machine cannot use (instead of a crash inside
    the first batch). Checked once, when the model loads."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError) as exc:
        raise ModelUnavailable(f"IMAGESEARCH_TORCH_DEVICE={device!r} is not a torch device: {exc}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailable(
            f"IMAGESEARCH_TORCH_DEVICE={device!r}, but torch {torch.__version__} sees no usable CUDA "
            "device here (a CPU-only build, or no GPU); set it to 'cpu' or install a CUDA build."
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ModelUnavailable(f"IMAGESEARCH_TORCH_DEVICE={device!r}, but Apple MPS is not available here.")


def default_device() -> str:
    """CUDA where this torch build sees a GPU, else the CPU (IMAGESEARCH_TORCH_DEVICE=auto)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchEncoder:
    """:class:`search.encoder.base.Encoder` over a SentenceTransformer."""

    runtime = "torch"
    precision = "fp32"

    def __init__(self, name: str, *, device: str, threads: int, setting: str) -> None:
        if device == "auto":
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            device = default_device()
        self.model = load_sentence_transformer(name, device=device, threads=threads, setting=setting)
        self.provider = str(self.model.device)

    def encode_texts(self, texts: Sequence[str], *, batch_size: int) -> np.ndarray:
        # No progress bar: sentence-transformers draws one per call at log level INFO (our
        # default), onto the web and worker logs, for every query.
        return self.model.encode(
            list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )

    def encode_images(self, images: Sequence[PILImage], *, batch_size: int) -> np.ndarray:
        return self.model.encode(
            list(images), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )
