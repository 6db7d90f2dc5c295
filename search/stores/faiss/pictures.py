"""A generation's second index: the same ready rows' image vectors alone.

An emphasised search (ranking by ``alpha * cos(q, image) + (1 - alpha) * cos(q, labels)``)
re-scores candidates from their stored parts; the rows whose picture lies nearest the query but
whose labels do not are far down the hybrid ranking, and this index finds them (BENCHMARKS.md,
"The emphasis's recall@10 at 1,000,000 rows"). It is of the generation's kind, tuned the same
way, written, verified and served beside the hybrid index; an IVF takes the hybrid index's
trained lists instead of training its own (the recall measured was the same). A generation
without it, or with a damaged one, still serves every other search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidGeneration
from .kinds import KINDS, Kind, SearchFn, ivf_sharing_lists
from .manifest import Manifest, PictureIndex
from .tuning import Tuning, tune
from .verify import check_loaded, read_verified

#: Whether an IVF picture index takes the hybrid index's lists (True) or trains its own.
SHARE_IVF_LISTS = True


@dataclass(frozen=True)
class Built:
    """A picture index ready to be written: ``save(path)`` writes it."""

    save: Callable[[Path], None]
    tuning: Tuning | None
    quantizer: str | None
    count: int
    index: Any  # the index built in memory (None for the flat kind, written from the arrays)


def build(
    faiss: Any,
    spec: Kind,
    hybrid_index: Any,
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    text_queries: np.ndarray | None,
    image_queries: np.ndarray | None,
) -> Built:
    """The picture index of ``vectors`` under ``ids``, of ``spec``'s kind, tuned on the probes.
    ``hybrid_index``: the generation's hybrid index built in memory (None for the flat kind)."""
    quantizer = None
    built = None
    if spec.name == "ivf" and hybrid_index is not None and SHARE_IVF_LISTS:
        built, quantizer = ivf_sharing_lists(faiss, hybrid_index, ids, vectors), "hybrid"
    elif spec.param is not None:
        built = spec.create(faiss, ids, vectors)
    tuning = None
    if built is not None:
        probes = {"text_queries": text_queries, "image_queries": image_queries}
        tuning = tune(faiss, spec, built, ids, vectors, **probes)

    def save(path: Path) -> None:
        if built is None:
            spec.save(faiss, path, ids, vectors)
        else:
            faiss.write_index(built, str(path))

    return Built(save=save, tuning=tuning, quantizer=quantizer, count=len(ids), index=built)


def entry(built: Built, *, file: str, kind: str, size: int, sha256: str) -> PictureIndex:
    """What the manifest records of a written picture index."""
    tuning = built.tuning
    return PictureIndex(
        file=file,
        kind=kind,
        count=built.count,
        sha256=sha256,
        size_bytes=size,
        param=tuning.param if tuning else None,
        param_value=tuning.value if tuning else None,
        recall_text=tuning.recall_text if tuning else None,
        recall_image=tuning.recall_image if tuning else None,
        quantizer=built.quantizer,
    )


@dataclass(frozen=True)
class Loaded:
    """A verified picture index, memory-mapped like the hybrid one."""

    index: Any
    search: SearchFn
    count: int


def load(faiss: Any, directory: Path, manifest: Manifest) -> Loaded | None:
    """The generation's picture index verified and loaded (None where it has none); raises
    InvalidGeneration when it is damaged, missing or mismatched."""
    picture = manifest.picture
    if picture is None:
        return None
    spec = KINDS.get(picture.kind)
    if spec is None:
        raise InvalidGeneration(f"unknown picture index kind {picture.kind!r}")
    path = directory / picture.file
    index = read_verified(path, size_bytes=picture.size_bytes, sha256=picture.sha256, spec=spec)
    check_loaded(faiss, spec, index, dim=manifest.dim, count=picture.count)
    spec.prepare(faiss, index)
    if picture.param_value is not None and picture.param == spec.param:
        spec.set_param(faiss, index, picture.param_value)
    return Loaded(index=index, search=spec.search_fn(faiss, index), count=picture.count)
