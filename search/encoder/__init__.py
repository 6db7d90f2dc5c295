"""The models: load them once per process, encode images and texts, combine hybrids.

Two models, possibly one: the image model (``IMAGESEARCH_CLIP_MODEL``, a CLIP) encodes images;
the text model (``IMAGESEARCH_TEXT_MODEL``, by default the same CLIP) encodes label texts and
text queries, e.g. a multilingual text encoder trained into CLIP's space so that queries work in
the user's own language. Both must make vectors of one dimension: a text model that does not is
refused when it loads, with a reason (see docs/architecture.md, 'Invariants').

Each runs in the runtime ``IMAGESEARCH_ENCODER`` names, behind one interface
(:class:`search.encoder.base.Encoder`): ``onnx`` (the default: ONNX Runtime over graphs exported
once from the configured model, :mod:`search.encoder.export`) or ``torch`` (sentence-transformers
on torch). No other module asks which one serves. With ONNX, this process imports neither torch
nor transformers; the export runs in a child process.

Nothing heavy is imported at module import time: the runtime loads on the first call that needs
a model. Vectors leave this package as L2-normalised float32 numpy arrays.
"""

from __future__ import annotations

import logging
import os
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gallery.vectors import from_bytes, to_bytes

from .base import Encoder, ModelUnavailable, normalize

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

__all__ = [
    "Encoder",
    "ModelUnavailable",
    "combine",
    "describe",
    "dimension",
    "encode_images",
    "cached_query_text",
    "encode_query_texts",
    "encode_texts",
    "ensure_models",
    "from_bytes",
    "get_model",
    "get_text_model",
    "last_load_error",
    "model_name",
    "normalize",
    "reset",
    "runtime",
    "set_worker_processes",
    "text_model_name",
    "threads",
    "to_bytes",
]

logger = logging.getLogger(__name__)

RUNTIMES = ("onnx", "torch")

_lock = threading.RLock()  # reentrant: loading the text model checks the image model's dimension
_model: Encoder | None = None
_model_key: tuple[str, str] | None = None  # (runtime, image model) of _model
_dimension: int | None = None
_text_model: Encoder | None = None
# (runtime, text model, image model it was checked against) of _text_model, or of a refused pair.
_text_model_key: tuple[str, str, str] | None = None
_text_refused: tuple[tuple[str, str, str], str] | None = None
# Why the last load of each model failed (None once it loads).
_image_error: str | None = None
_text_error: str | None = None
# Query vectors by (text model, text).
_text_cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_TEXT_CACHE_SIZE = 512
_worker_processes = 1


def set_worker_processes(count: int) -> None:
    """Record how many worker processes share the cores (called when a Celery worker starts)."""
    global _worker_processes
    _worker_processes = max(1, int(count))


def threads() -> int:
    """Threads for the model in this process: the setting, or the cores shared among the
    processes (both runtimes).

    Never more threads than cores in all: oversubscribed, the model's threads wait on each other
    at every operation and a batch takes many times longer (BENCHMARKS-history.md).
    """
    from django.conf import settings

    configured = settings.IMAGESEARCH_TORCH_THREADS
    if configured:
        return configured
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // _worker_processes)


def runtime() -> str:
    """The configured runtime: "onnx" or "torch" (``IMAGESEARCH_ENCODER``)."""
    from django.conf import settings

    return settings.IMAGESEARCH_ENCODER


def model_name() -> str:
    """The image model: the name recorded with image vectors, hybrids and index generations."""
    from django.conf import settings

    return settings.IMAGESEARCH_CLIP_MODEL


def text_model_name() -> str:
    """The text model: the name recorded with label vectors. Empty setting: the image model."""
    from django.conf import settings

    return settings.IMAGESEARCH_TEXT_MODEL or model_name()


def export_root() -> Path:
    """Where exports go when the model's own directory is not writable."""
    from django.conf import settings

    return Path(settings.DATA_DIR) / "onnx-runtime"


def _load(name: str, setting: str) -> Encoder:
    from django.conf import settings

    if runtime() == "torch":
        from .torch_runtime import TorchEncoder

        return TorchEncoder(
            name, device=settings.IMAGESEARCH_TORCH_DEVICE, threads=threads(), setting=setting
        )
    from . import cache, int8
    from .onnx_runtime import OnnxEncoder

    directory = cache.export_in_subprocess(name, export_root(), setting=setting)
    wanted = settings.IMAGESEARCH_ENCODER_INT8 and int8.approved(
        model_name(), text_model_name(), export_root()
    )
    precision = "int8" if wanted else "fp32"
    return OnnxEncoder(directory, threads=threads(), precision=precision)


def _load_probed(name: str, setting: str) -> tuple[Encoder, int]:
    """Load a model and encode one text: (encoder, its dimension). Any failure is a
    ModelUnavailable saying why, for a person."""
    try:
        encoder = _load(name, setting)
        probe = encoder.encode_texts(["a"], batch_size=1)
    except ModelUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes a visible state
        logger.exception("loading model %s failed", name)
        raise ModelUnavailable(f"The model {name!r} could not be loaded: {exc}") from exc
    return encoder, int(probe.shape[1])


def get_model() -> Encoder:
    """The process-wide encoder of the image model, loaded on first use."""
    global _model, _model_key, _dimension, _image_error
    key = (runtime(), model_name())
    if _model is not None and _model_key == key:
        return _model
    with _lock:
        if _model is not None and _model_key == key:
            return _model
        try:
            model, dim = _load_probed(key[1], "IMAGESEARCH_CLIP_MODEL")
        except ModelUnavailable as exc:
            _image_error = str(exc)
            raise
        _model, _model_key, _dimension, _image_error = model, key, dim, None
        _text_cache.clear()
        logger.info(
            "loaded model %s (dimension %d, %s %s %s, %d threads)",
            key[1],
            dim,
            model.runtime,
            model.precision,
            model.provider,
            threads(),
        )
        return _model


def get_text_model() -> Encoder:
    """The process-wide encoder of the text model (the image model's own when both are one),
    loaded on first use, after the image model: a text model whose vectors have another
    dimension than the image model's is refused (ModelUnavailable naming both)."""
    global _text_model, _text_model_key, _text_refused, _text_error
    name, image_name = text_model_name(), model_name()
    if name == image_name:
        _text_error = None  # the image model's own error, if any, says it all
        return get_model()
    key = (runtime(), name, image_name)
    if _text_model is not None and _text_model_key == key:
        return _text_model
    with _lock:
        if _text_model is not None and _text_model_key == key:
            return _text_model
        if _text_refused is not None and _text_refused[0] == key:
            # Refused for good (not worth loading again for every query): the reason stands.
            _text_error = _text_refused[1]
            raise ModelUnavailable(_text_error)
        image_dim = dimension()  # loads the image model first: its dimension is the one to match
        try:
            model, dim = _load_probed(name, "IMAGESEARCH_TEXT_MODEL")
        except ModelUnavailable as exc:
            _text_error = str(exc)
            raise
        if dim != image_dim:
            _text_error = (
                f"The text model {name!r} makes {dim}-dimensional vectors but the image model "
                f"{image_name!r} makes {image_dim}-dimensional ones: text and images must share one "
                "space. Set IMAGESEARCH_TEXT_MODEL to a text model made for that image model, or "
                "leave it empty to use the image model for texts too."
            )
            _text_refused = (key, _text_error)
            logger.error("%s", _text_error)
            raise ModelUnavailable(_text_error)
        _text_model, _text_model_key, _text_error = model, key, None
        logger.info("loaded text model %s (dimension %d, %s %s)", name, dim, model.runtime, model.provider)
        return _text_model


def ensure_models() -> None:
    """Load the image and the text model (the embedding pipeline needs both); ModelUnavailable
    with the reason when either cannot be used."""
    get_model()
    get_text_model()


def dimension() -> int:
    """The dimension of the image model's vectors (the text model's is the same)."""
    get_model()
    assert _dimension is not None
    return _dimension


def last_load_error() -> str | None:
    """Why a model of this process could not be loaded the last time it was tried (the image
    model's reason first), or None."""
    return _image_error or _text_error


def describe() -> dict[str, Any]:
    """What serves in this process, for the status page: the runtime, where it runs
    (provider or device), the precision, and, with int8 asked for, the agreement measured."""
    from django.conf import settings

    loaded = _model if _model is not None and _model_key == (runtime(), model_name()) else None
    summary: dict[str, Any] = {
        "runtime": runtime(),
        "provider": loaded.provider if loaded else "",
        "precision": loaded.precision if loaded else "",
        "int8_requested": settings.IMAGESEARCH_ENCODER_INT8,
        "int8_agreement": None,
        "int8_reason": "",
    }
    if runtime() == "onnx" and settings.IMAGESEARCH_ENCODER_INT8:
        from . import int8

        summary.update(int8.summary(model_name(), text_model_name(), export_root()))
    return summary


def reset() -> None:
    """Forget the loaded models (tests, or after a model setting changed)."""
    global _model, _model_key, _dimension, _text_model, _text_model_key, _text_refused
    global _image_error, _text_error
    with _lock:
        _model = _model_key = _dimension = _image_error = None
        _text_model = _text_model_key = _text_refused = _text_error = None
        _text_cache.clear()


#: CLIP resizes an image's short side to its input size, then keeps the centred square. A
#: longer side is cropped (centred) to this many times the short side first: the square CLIP
#: keeps is unchanged, and a 100000 x 1 image is not blown up to 22 million x 224 pixels
#: (tens of GB) before that crop.
MAX_ASPECT_RATIO = 2


def _centre_within_aspect(image: PILImage) -> PILImage:
    width, height = image.size
    limit = max(1, min(width, height) * MAX_ASPECT_RATIO)
    if width > limit:
        left = (width - limit) // 2
        return image.crop((left, 0, left + limit, height))
    if height > limit:
        top = (height - limit) // 2
        return image.crop((0, top, width, top + limit))
    return image


def encode_images(images: Sequence[PILImage], *, batch_size: int = 16) -> np.ndarray:
    """Encode RGB images into an (n, d) array of unit vectors."""
    if not images:
        return np.zeros((0, dimension()), dtype=np.float32)
    model = get_model()
    images = [_centre_within_aspect(image) for image in images]
    return normalize(model.encode_images(images, batch_size=batch_size))


def encode_texts(texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """Encode texts with the text model into an (n, d) array of unit vectors. Texts longer than
    the model reads (77 tokens for CLIP, 128 for the multilingual text model) are truncated by
    its tokenizer. Texts are NFC-normalised first: "café" typed with a combining accent (as
    macOS spells file and folder names) is the same label or query as "café" typed composed."""
    model = get_text_model()
    if not texts:
        return np.zeros((0, dimension()), dtype=np.float32)
    texts = [unicodedata.normalize("NFC", text) for text in texts]
    return normalize(model.encode_texts(texts, batch_size=batch_size))


def cached_query_text(text: str) -> np.ndarray | None:
    """The vector :func:`encode_query_texts` keeps for ``text``, or None: no model work either way
    (the query path asks first, and takes a model slot only when it must encode)."""
    get_text_model()  # loaded (or refused) before the cache answers
    cached = _text_cache.get((text_model_name(), text))
    if cached is not None:
        _text_cache.move_to_end((text_model_name(), text))
    return cached


def encode_query_texts(texts: Sequence[str]) -> list[np.ndarray]:
    """Several queries' unit vectors, in the order given, from one encode of those not in the
    small LRU (query texts that arrive together share it: search.query.text_batches). Each
    vector is remembered and read-only."""
    get_text_model()  # loaded (or refused) before the cache answers
    model = text_model_name()
    found: dict[str, np.ndarray] = {}
    for text in texts:
        cached = _text_cache.get((model, text))
        if cached is not None:
            _text_cache.move_to_end((model, text))
            found[text] = cached
    missing = [text for text in dict.fromkeys(texts) if text not in found]
    for text, vector in zip(missing, encode_texts(missing), strict=True):
        vector.setflags(write=False)
        found[text] = _text_cache[(model, text)] = vector
    while len(_text_cache) > _TEXT_CACHE_SIZE:
        _text_cache.popitem(last=False)
    return [found[text] for text in texts]


def combine(image_vector: np.ndarray, label_vectors: Sequence[np.ndarray], weight: float) -> np.ndarray:
    """The hybrid vector: ``normalize(w * n(image) + (1 - w) * n(mean of n(labels))))``.

    With no labels the hybrid is the normalised image vector. ``weight`` 0.5 is the plain
    average of the two normalised parts.
    """
    image_part = normalize(np.asarray(image_vector, dtype=np.float32).reshape(1, -1))[0]
    if len(label_vectors) == 0:
        return image_part
    labels = normalize(np.stack([np.asarray(v, dtype=np.float32) for v in label_vectors]))
    label_part = normalize(labels.mean(axis=0, keepdims=True))[0]
    return normalize((weight * image_part + (1.0 - weight) * label_part).reshape(1, -1))[0]
