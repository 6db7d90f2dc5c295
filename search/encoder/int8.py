"""int8, only where it agrees with fp32 on the user's own library (``IMAGESEARCH_ENCODER_INT8``).

Dynamically quantised weights (:func:`search.encoder.cache.int8_graph`) make both towers faster,
but move every vector a little; whether the results stay the same depends on the model's
weights and on the library. So int8 serves only once :func:`measure` has shown, on a sample of
the library (label texts as queries, a few hundred images as the library), that int8 gives the
same top 10 (as a set) as fp32 for at least :data:`MIN_AGREEMENT` of the queries. The figure and the
decision are kept beside the image model's export (``int8_agreement.json``), once per model
pair: a changed model has another export, and is measured again. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import cache

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

AGREEMENT_FILE = "int8_agreement.json"
#: The share of queries whose int8 top 10 is fp32's (as a set), below which int8 is refused.
MIN_AGREEMENT = 0.95
TOP_K = 10


def _dirs(image_model: str, text_model: str, root: Path) -> tuple[Path | None, Path | None]:
    image_dir = cache.find_export(image_model, root)
    text_dir = image_dir if text_model == image_model else cache.find_export(text_model, root)
    return image_dir, text_dir


def decision(image_model: str, text_model: str, root: Path) -> dict[str, Any] | None:
    """The measurement made for these two models as their files are now, or None."""
    image_dir, text_dir = _dirs(image_model, text_model, root)
    if image_dir is None or text_dir is None:
        return None
    try:
        data = json.loads((image_dir / AGREEMENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("text_export") != text_dir.name:
        return None  # measured with another text model
    return data


def approved(image_model: str, text_model: str, root: Path) -> bool:
    """Whether int8 was measured to agree for these two models."""
    found = decision(image_model, text_model, root)
    return bool(found and found.get("use_int8"))


def summary(image_model: str, text_model: str, root: Path) -> dict[str, Any]:
    """The figure and its explanation, for the status page."""
    found = decision(image_model, text_model, root)
    if found is None:
        return {
            "int8_agreement": None,
            "int8_reason": (
                "int8 is asked for but not measured yet: a worker measures its agreement with fp32 "
                "once per model, when the library holds enough images and labels; fp32 serves until then."
            ),
        }
    return {"int8_agreement": found["agreement"], "int8_reason": found["reason"]}


def agreement(
    fp32_queries: np.ndarray, fp32_library: np.ndarray, int8_queries: np.ndarray, int8_library: np.ndarray
) -> tuple[float, float]:
    """(the share of queries whose int8 top 10 is fp32's top 10 as a set, the mean share of
    fp32's top 10 that int8's keeps), all vectors unit length."""
    k = min(TOP_K, len(fp32_library))
    if k == 0 or len(fp32_queries) == 0:
        return 0.0, 0.0
    ours = np.argsort(-(fp32_queries @ fp32_library.T), axis=1)[:, :k]
    theirs = np.argsort(-(int8_queries @ int8_library.T), axis=1)[:, :k]
    overlaps = [len(set(a) & set(b)) / k for a, b in zip(ours, theirs, strict=True)]
    return float(np.mean([o == 1.0 for o in overlaps])), float(np.mean(overlaps))


def measure(
    image_model: str,
    text_model: str,
    root: Path,
    *,
    queries: Sequence[str],
    images: Sequence[PILImage],
    threads: int,
) -> dict[str, Any]:
    """Measure int8 against fp32 on ``queries`` (label texts) over ``images`` (a sample of the
    library), record the figure and the decision beside the image model's export, and return
    them. Both exports must exist (the models are loaded)."""
    from .base import normalize
    from .onnx_runtime import OnnxEncoder

    image_dir, text_dir = _dirs(image_model, text_model, root)
    if image_dir is None or text_dir is None:
        raise cache.ExportFailed("int8 can only be measured once both models are exported.")
    scores = {}
    for precision in ("fp32", "int8"):
        images_encoder = OnnxEncoder(image_dir, threads=threads, precision=precision)
        texts_encoder = (
            images_encoder
            if text_dir == image_dir
            else OnnxEncoder(text_dir, threads=threads, precision=precision)
        )
        scores[precision] = (
            normalize(texts_encoder.encode_texts(list(queries), batch_size=64)),
            normalize(images_encoder.encode_images(list(images), batch_size=16)),
        )
    figure, overlap = agreement(scores["fp32"][0], scores["fp32"][1], scores["int8"][0], scores["int8"][1])
    use = figure >= MIN_AGREEMENT
    verdict = "int8 serves" if use else "int8 is refused and fp32 serves"
    reason = (
        f"int8 gave fp32's top {TOP_K} for {figure:.0%} of {len(queries)} label texts over "
        f"{len(images)} images of this library (at least {MIN_AGREEMENT:.0%} needed; on average it "
        f"kept {overlap:.0%} of each top {TOP_K}): {verdict}."
    )
    if not use:
        reason += (
            " Scores that lie close together (an untrained or a narrow model, a library of "
            "near-identical pictures) reorder under int8's small errors."
        )
    result = {
        "image_model": image_model,
        "text_model": text_model,
        "text_export": text_dir.name,
        "agreement": round(figure, 4),
        "mean_overlap": round(overlap, 4),
        "queries": len(queries),
        "images": len(images),
        "use_int8": use,
        "reason": reason,
        "measured_at": time.time(),
    }
    staging = image_dir / f".{AGREEMENT_FILE}.{os.getpid()}"
    staging.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(staging, image_dir / AGREEMENT_FILE)
    return result
