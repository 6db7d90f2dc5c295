"""Choosing the kind for ``auto`` and tuning an approximate index at build time.

``auto`` builds the exact flat index up to a number of vectors (below it one exact scan stays
within a small latency budget; the default is measured by ``benchmarks/flat_threshold.py``) and
an IVF index above it. An approximate index's search parameter (``nprobe``, ``efSearch``) is set
to the smallest value whose recall@10 against exact results reaches the target on the probe
queries the caller gives: text-like queries (the labels' own text vectors, with the modality gap
real text queries have) and image-like ones (stored image vectors). The recall measured with the
chosen value is recorded in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: ``auto`` builds the exact flat index up to this many vectors: where one exact scan of a query
#: stops being cheap beside the text encode (benchmarks/flat_threshold.py; the figure in
#: BENCHMARKS.md). The threshold depends on the machine, but a wrong one costs latency, never results.
AUTO_FLAT_MAX_VECTORS = 25_000
#: The approximate kind ``auto`` builds above the threshold (faster to build and better for
#: text-like queries than HNSW: BENCHMARKS.md).
AUTO_APPROXIMATE_KIND = "ivf"
RECALL_TARGET = 0.95
#: Tuning aims this much above the target on its sample of queries, so that the recall over all
#: queries of that sort, not only the sample's, reaches the target (BENCHMARKS.md).
TUNING_MARGIN = 0.01
RECALL_K = 10
#: Probe queries of each sort at most (exact answers for them cost a batch scan of the library).
MAX_PROBES = 400


def kind_for(requested: str, count: int, flat_max_vectors: int = AUTO_FLAT_MAX_VECTORS) -> str:
    """The kind to build for ``requested`` (``auto`` or a kind) and ``count`` vectors."""
    if requested != "auto":
        return requested
    return "flat" if count <= flat_max_vectors else AUTO_APPROXIMATE_KIND


@dataclass(frozen=True)
class Tuning:
    """What the build chose and measured: the parameter and the recall@10 it gives."""

    param: str
    value: int
    recall_text: float | None
    recall_image: float | None
    text_queries: int
    image_queries: int


def probe_sample(queries: np.ndarray | None, dim: int, *, seed: int) -> np.ndarray | None:
    """Up to :data:`MAX_PROBES` finite, normalised rows of ``queries`` of dimension ``dim``."""
    if queries is None:
        return None
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim or not len(q):
        return None
    q = q[np.isfinite(q).all(axis=1)]
    norms = np.linalg.norm(q, axis=1)
    q = q[norms > 0] / norms[norms > 0, None]
    if len(q) > MAX_PROBES:
        q = q[np.sort(np.random.default_rng(seed).choice(len(q), MAX_PROBES, replace=False))]
    return np.ascontiguousarray(q, dtype=np.float32) if len(q) else None


def exact_neighbours(faiss: Any, vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Positions in ``vectors`` of each query's exact top-``k`` by inner product (a batch scan)."""
    _, positions = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
    return positions


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row of ``exact`` that the same row of ``found`` holds."""
    k = exact.shape[1]
    shares = [len(set(f[f >= 0].tolist()) & set(e.tolist())) / k for f, e in zip(found, exact, strict=True)]
    return float(np.mean(shares))


def tune(
    faiss: Any,
    spec: Any,
    index: Any,
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    text_queries: np.ndarray | None,
    image_queries: np.ndarray | None,
    target: float = RECALL_TARGET + TUNING_MARGIN,
) -> Tuning | None:
    """Set ``index``'s search parameter to the smallest value reaching ``target`` recall@10 on
    both sorts of probe queries given (the largest value tried if none does), and return it with
    the recall measured. ``None`` for an exact kind or an empty index.

    Recall grows with the parameter (more lists visited, a wider beam), so doubling from the
    kind's smallest value and then bisecting finds the smallest value.
    """
    n, dim = vectors.shape
    if spec.param is None or n == 0:
        return None
    k = min(RECALL_K, n)
    text = probe_sample(text_queries, dim, seed=1)
    image = probe_sample(image_queries, dim, seed=2)
    if image is None:  # nothing given: stored vectors stand in for image queries
        image = probe_sample(vectors, dim, seed=3)
    probes = [q for q in (text, image) if q is not None]
    exact = [ids[exact_neighbours(faiss, vectors, q, k)] for q in probes]

    def recalls(value: int) -> list[float]:
        spec.set_param(faiss, index, value)
        return [recall_at_k(index.search(q, k)[1], e) for q, e in zip(probes, exact, strict=True)]

    lo, hi = spec.param_range(index, k)
    measured: dict[int, list[float]] = {}

    def reaches(value: int) -> bool:
        if value not in measured:
            measured[value] = recalls(value)
        return min(measured[value]) >= target

    # Doubling first, so that a small answer costs only cheap searches; then bisect.
    value = lo
    while value < hi and not reaches(value):
        value = min(hi, value * 2)
    best, low = value, max(lo, value // 2 + 1)
    if reaches(best):
        high = best - 1
        while low <= high:
            mid = (low + high) // 2
            if reaches(mid):
                best, high = mid, mid - 1
            else:
                low = mid + 1
    chosen = measured[best]
    spec.set_param(faiss, index, best)
    text_recall = round(chosen[0], 4) if text is not None else None
    return Tuning(
        param=spec.param,
        value=int(best),
        recall_text=text_recall,
        recall_image=round(chosen[-1], 4),
        text_queries=0 if text is None else len(text),
        image_queries=len(image),
    )
