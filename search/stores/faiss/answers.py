"""The shape of a search's queries and answers, the same for the hybrid and the picture index:
queries checked into a float32 matrix, answers padded where an index holds fewer than ``k``."""

from __future__ import annotations

import numpy as np

from .kinds import SearchFn


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def ranked(search: SearchFn, ntotal: int, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``search``'s top-``k`` of each row of ``q``, padded with -1 ids and -inf scores where the
    index holds fewer than ``k`` vectors."""
    m = q.shape[0]
    scores = np.full((m, k), -np.inf, dtype=np.float32)
    ids = np.full((m, k), -1, dtype=np.int64)
    kk = min(k, ntotal)
    if m and kk:
        d_out, i_out = search(np.ascontiguousarray(q), kk)
        scores[:, :kk] = d_out
        ids[:, :kk] = i_out
        scores[ids == -1] = -np.inf
    return scores, ids


def query_matrix(queries: np.ndarray, dim: int) -> np.ndarray:
    """``queries`` as a float32 ``(m, dim)`` matrix; ValueError if it has another shape or
    a non-finite element."""
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must have shape (m, {dim}), got {np.shape(queries)}")
    if not np.isfinite(q).all():
        raise ValueError("queries must be finite")
    return q
