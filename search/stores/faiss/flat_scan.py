"""The flat kind's exact search for a few queries: faiss's inner-product kernel over the stored
vectors, then ``argpartition``.

For one query (or a handful), scoring every row with ``faiss.fvec_inner_products_ny`` (faiss's
SIMD inner-product kernel, built for the CPU's AVX2 or AVX-512) and keeping the top k with numpy
is faster than faiss's flat search, which keeps a heap as it goes, and than numpy's
``vectors @ q``, whose OpenBLAS matrix-vector product on one thread ran at under half the
kernel's speed (BENCHMARKS.md, "The flat scan's kernel"); the results are the same top-k.
Batches go to faiss, whose blocked sgemm wins there.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

#: ``(queries, k) -> (scores, ids)`` for one loaded index.
SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]

#: Up to this many queries at once, the flat kind scans row by row (see :func:`flat_searcher`).
ROW_SCAN_MAX_QUERIES = 4
#: A flat scan is split across the scan threads only above this many rows per part: below it,
#: handing parts to threads costs more than it saves.
SCAN_MIN_ROWS_PER_THREAD = 32768
#: Flat indexes up to this size are scanned from a private copy in each process; larger ones
#: straight from the shared read-only mapping. A scan over private memory is faster where the
#: kernel reclaims page-cache pages that are in use, but the copy costs ``n x d x 4`` bytes per
#: web process: small indexes pay it for speed, large ones stay shared (one copy for all).
PRIVATE_COPY_MAX_BYTES = 512 * 2**20

_scan_lock = threading.Lock()
_scan_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool)


def _scan_threads() -> int:
    """Threads one flat scan may use: the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _scan_executor() -> ThreadPoolExecutor:
    """This process's scan threads (created after fork, once), with numpy's BLAS at one thread.

    Why not numpy's own BLAS threads: OpenBLAS threads spin while they wait, so when other
    processes (or other requests) hold the cores, a multi-threaded ``sgemv`` ran slower than
    a single-threaded one. Our threads block instead of spinning: a lone query still uses
    every core, and concurrent requests just queue their parts.
    """
    global _scan_pool
    pid = os.getpid()
    pool = _scan_pool
    if pool is not None and pool[0] == pid:
        return pool[1]
    with _scan_lock:
        if _scan_pool is None or _scan_pool[0] != pid:
            _numpy_blas_single_threaded()
            _scan_pool = (pid, ThreadPoolExecutor(_scan_threads(), thread_name_prefix="flat-scan"))
        return _scan_pool[1]


def _numpy_blas_single_threaded() -> None:
    """Limit numpy's own BLAS (not torch's, not faiss's) to one thread in this process."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a dependency of ours; without it, BLAS decides
        return
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas" and lib.filepath.startswith(os.path.join(numpy_dir, "numpy")):
            lib.set_num_threads(1)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest ``scores``, best first (ties: lower position first)."""
    n = scores.shape[0]
    if k < n:
        part = np.argpartition(scores, n - k)[n - k :]
    else:
        part = np.arange(n)
    return part[np.lexsort((part, -scores[part]))]


def flat_searcher(faiss: Any, index: Any) -> SearchFn:
    """Exact search that scores every one of the flat index's vectors with faiss's kernel.

    The scan reads ``n x d x 4`` bytes: memory bandwidth is the limit (see
    :data:`PRIVATE_COPY_MAX_BYTES` for which memory it reads). Above
    :data:`SCAN_MIN_ROWS_PER_THREAD` rows per thread the rows are split among the scan threads
    (:func:`_scan_executor`) and the parts' top-k merged. Batches of more than
    :data:`ROW_SCAN_MAX_QUERIES` go to faiss, which needs no ``n x m`` score matrix.
    """
    n, d = int(index.ntotal), int(index.d)
    if n == 0:
        return index.search
    inner = faiss.downcast_index(index.index)
    # A view of the codes in the read-only mapping that ``index`` owns (the closure keeps
    # ``index`` alive as long as the view is used), or a private copy of them.
    vectors = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)
    if vectors.nbytes <= PRIVATE_COPY_MAX_BYTES:
        vectors = np.array(vectors)
    vectors.flags.writeable = False
    labels = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    inner_products, swig_ptr = faiss.fvec_inner_products_ny, faiss.swig_ptr
    _scan_executor()  # numpy's BLAS at one thread in this process, from the first search on
    parts = max(1, min(_scan_threads(), n // SCAN_MIN_ROWS_PER_THREAD))
    bounds = [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]

    def scan_part(query: np.ndarray, k: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.empty(hi - lo, dtype=np.float32)
        # ``query`` is a C-contiguous float32 row (ranked() hands a contiguous float32 matrix).
        inner_products(swig_ptr(scores), swig_ptr(query), swig_ptr(vectors[lo:hi]), d, hi - lo)
        best = _top_k(scores, k)
        return scores[best], best + lo

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        m = queries.shape[0]
        if m > ROW_SCAN_MAX_QUERIES:
            return index.search(queries, k)
        out_scores = np.empty((m, k), dtype=np.float32)
        out_ids = np.empty((m, k), dtype=np.int64)
        for row in range(m):
            if parts == 1:
                scores, positions = scan_part(queries[row], k, 0, n)
            else:
                # This process's pool, asked at each search: a searcher made before a fork must
                # not hand work to the parent's threads, which the child does not have.
                executor = _scan_executor()
                futures = [executor.submit(scan_part, queries[row], k, lo, hi) for lo, hi in bounds]
                found = [future.result() for future in futures]
                all_scores = np.concatenate([f[0] for f in found])
                all_positions = np.concatenate([f[1] for f in found])
                order = np.lexsort((all_positions, -all_scores))[:k]
                scores, positions = all_scores[order], all_positions[order]
            out_scores[row] = scores
            out_ids[row] = labels[positions]
        return out_scores, out_ids

    return search
