"""Every vector's nearest neighbours among the same vectors, a batch of queries at a time, keeping
only the pairs at or above a cosine threshold.

What the near-duplicate scan needs: ``n`` queries against the same ``n`` vectors. One faiss
search per batch of queries; a batch bounds the ``batch x k`` results held at once, and lets the
caller report progress between batches. Exact (flat inner product, faiss's blocked BLAS product)
up to :data:`APPROXIMATE_FROM` vectors; beyond, the whole search costs ``n^2 d`` and grows
quadratically (minutes at 100k on two cores), so an IVF index of the "ivf" kind answers instead:
a near copy lies so close to its original that both fall in the same list or one of the few
nearest, and the lists visited are a small share of the vectors (recall and speed: BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .faiss_lib import import_faiss
from .kinds import KINDS

#: Queries per faiss search: large enough for BLAS to run at full speed, small enough that
#: progress moves every second or so at 100k vectors.
NEIGHBOUR_BATCH = 2048
#: From this many vectors on, the search is approximate (IVF) unless asked otherwise.
APPROXIMATE_FROM = 50_000
#: Lists each query visits. Fewer than the search index's: a near copy lies next to its original,
#: and on clustered vectors the lists of the big clusters are the ones visited most, so the
#: search index's 16 of ~sqrt(n) lists made this no faster than the exact search (BENCHMARKS.md).
NEIGHBOUR_NPROBE = 4


def close_pairs(
    vectors: np.ndarray,
    *,
    k: int,
    threshold: float,
    batch: int = NEIGHBOUR_BATCH,
    on_batch: Callable[[int, int], None] | None = None,
    approximate: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(i, j, cosine)`` of row positions, ``i < j``, each once, where ``j`` is among the
    ``k`` nearest rows of ``i`` or ``i`` among those of ``j``, and their inner product is at least
    ``threshold``. Rows must be unit vectors (float32). ``on_batch(done, total)`` is called after
    each batch of queries. ``approximate``: search an IVF index (default: from
    :data:`APPROXIMATE_FROM` rows on)."""
    faiss = import_faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if n < 2:
        if on_batch is not None:
            on_batch(n, n)
        return empty
    if approximate is None:
        approximate = n >= APPROXIMATE_FROM
    if approximate:
        ivf = KINDS["ivf"]
        index = ivf.create(faiss, np.arange(n, dtype=np.int64), vectors)
        index.nprobe = min(NEIGHBOUR_NPROBE, index.nlist)
    else:
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
    k = min(k + 1, n)  # each row finds itself too
    firsts, seconds, scores = [], [], []
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        found_scores, found = index.search(vectors[start:stop], k)
        rows = np.repeat(np.arange(start, stop, dtype=np.int64), k).reshape(stop - start, k)
        keep = (found_scores >= threshold) & (found != rows) & (found >= 0)
        i, j = rows[keep], found[keep]
        firsts.append(np.minimum(i, j))
        seconds.append(np.maximum(i, j))
        scores.append(found_scores[keep])
        if on_batch is not None:
            on_batch(stop, n)
    first, second, score = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(scores)
    if not len(first):
        return empty
    # Each pair is found from both ends (when both are within the other's k): keep it once.
    _, unique = np.unique(first * n + second, return_index=True)
    return first[unique], second[unique], score[unique].astype(np.float32)
