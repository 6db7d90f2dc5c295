"""Where the exact flat scan stops being cheap: the size behind ``auto``'s default threshold.

``IMAGESEARCH_INDEX_KIND=auto`` builds the exact flat index up to
``search.stores.faiss.AUTO_FLAT_MAX_VECTORS`` vectors and an approximate one above. That default comes
from this measurement: the product's flat index (written by ``write_generation``, served by
``IndexReader``, so private copy or shared mapping as the product decides) is searched one query
at a time (``k`` = 66, what the search page asks for) at growing sizes, and the threshold is the
size where the p50 of one search reaches the budget, interpolated on a log-log line between the
two sizes around it.

The budget, :data:`BUDGET_MS`, is a fifth of a text encode with one torch thread here (~45 ms):
below it the scan stays a small part of a request, whatever the size.

``python -m benchmarks.flat_threshold`` prints the figures as JSON.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .timing import noise, summary_ms

BUDGET_MS = 10.0
SIZES = (10_000, 20_000, 40_000, 80_000, 160_000, 320_000)
K = 66


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def measure(sizes: tuple[int, ...] = SIZES, *, dim: int = 512, queries: int = 150) -> dict[str, Any]:
    from search.stores import faiss as search_index

    out: dict[str, Any] = {"budget_ms": BUDGET_MS, "k": K, "dim": dim, "sizes": {}}
    rng = np.random.default_rng(7)
    with noise(out):
        for n in sizes:
            workdir = Path(tempfile.mkdtemp(prefix=f"flat-threshold-{n}-"))
            try:
                vectors = _unit(rng, n, dim)
                search_index.write_generation(
                    workdir, np.arange(n, dtype=np.int64), vectors, model="benchmark", image_weight=0.5
                )
                del vectors
                reader = search_index.IndexReader(workdir, check_interval=3600)
                reader.refresh()
                q = _unit(rng, queries, dim)
                for row in q[:10]:  # warm: the first passes fault the pages in
                    reader.search(row, K)
                times = []
                for row in q:
                    t = time.perf_counter()
                    reader.search(row, K)
                    times.append(time.perf_counter() - t)
                out["sizes"][str(n)] = summary_ms(times)
                reader.close()
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
    out["threshold"] = threshold({int(n): s["p50_ms"] for n, s in out["sizes"].items()}, out["budget_ms"])
    return out


def threshold(p50_ms: dict[int, float], budget_ms: float) -> int:
    """The size where the p50 reaches ``budget_ms``, on a log-log line between the measured sizes
    around it (the smallest size if even that is over, the largest if none is)."""
    sizes = sorted(p50_ms)
    if p50_ms[sizes[0]] > budget_ms:
        return sizes[0]
    for lo, hi in zip(sizes, sizes[1:], strict=False):
        if p50_ms[hi] > budget_ms:
            a, b = math.log(p50_ms[lo]), math.log(p50_ms[hi])
            f = (math.log(budget_ms) - a) / (b - a) if b > a else 1.0
            return int(round(math.exp(math.log(lo) + f * (math.log(hi) - math.log(lo))), -3))
    return sizes[-1]


def main() -> int:
    from . import env

    env.configure(fresh=False)
    env.setup_django()
    print(json.dumps(measure(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
