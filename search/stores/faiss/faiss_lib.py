"""faiss, imported on first use with the process-wide settings the index relies on.

Importing the index package must stay cheap (web processes that never search, management
commands, settings): nothing here imports faiss until :func:`import_faiss` is called.
"""

from __future__ import annotations

import os
import threading
from typing import Any

#: faiss's ``distance_compute_blas_threshold`` set on first use; see :func:`import_faiss`.
BLAS_THRESHOLD = 1

_faiss_lock = threading.Lock()
_faiss_module: Any = None


def import_faiss() -> Any:
    """Import faiss on first use and apply process-wide settings once.

    ``distance_compute_blas_threshold``: faiss's exact flat search computes inner products
    with BLAS sgemm only when ``nq * d`` reaches the threshold (default 128000, i.e. 250
    queries at d=512), and with a slower per-pair SIMD loop below it. BLAS was never
    slower in our measurements (BENCHMARKS.md), so we always take it (threshold 1). The
    setting is global to the process; this package is the only faiss user. Thread count
    is left to faiss/OpenMP (``OMP_NUM_THREADS``): a deployment running several web
    processes per machine may want to lower it.
    """
    global _faiss_module
    if _faiss_module is None:
        with _faiss_lock:
            if _faiss_module is None:
                # faiss brings its own OpenMP runtime: let its idle threads sleep rather than
                # spin, as torch's do (search.encoder), so that a batch search or an IVF
                # build never leaves threads spinning on the cores requests need.
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                import faiss as _f

                _f.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
                _faiss_module = _f
    return _faiss_module
