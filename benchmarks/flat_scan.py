"""The flat scan's kernel: what scores every row for one query, on this CPU.

``python -m benchmarks.flat_scan [--sizes 10000 100000] [--rounds 200]`` times, in interleaved
rounds over the same unit vectors (in this process's memory, as a small flat index is served)
and the same queries, one query's top ``k`` (66, what the search page asks for) three ways:

- ``numpy_1_thread``: ``vectors @ q`` (numpy's OpenBLAS, at the one thread the product gives it),
  then the top k (``flat_scan._top_k``): the flat scan before it used faiss's kernel;
- ``faiss_kernel``: the product's scan (``flat_scan.flat_searcher`` over an
  ``IndexIDMap2(IndexFlatIP)`` of the vectors: ``faiss.fvec_inner_products_ny``, then the same
  top k), as the index reader calls it;
- ``faiss_flat``: faiss's own ``IndexFlatIP.search``.

Prints each p50, the ratios against ``numpy_1_thread``, and whether all three found the same
top k for every query; the figures go to ``flat_scan.json`` in the results directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from .timing import noise, summary_ms

K = 66


def run(size: int, *, rounds: int, dim: int = 512) -> dict[str, Any]:
    import faiss
    from threadpoolctl import threadpool_limits

    from search.stores.faiss.flat_scan import _top_k, flat_searcher

    rng = np.random.default_rng(size)
    vectors = rng.standard_normal((size, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((rounds, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    mapped = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    mapped.add_with_ids(vectors, np.arange(size, dtype=np.int64))  # ids = positions
    product_scan = flat_searcher(faiss, mapped)

    def numpy_1_thread(q: np.ndarray) -> np.ndarray:
        return _top_k(vectors @ q, K)

    def faiss_kernel(q: np.ndarray) -> np.ndarray:
        return product_scan(q[None, :], K)[1][0]

    def faiss_flat(q: np.ndarray) -> np.ndarray:
        return flat.search(q[None, :], K)[1][0]

    ways = {"numpy_1_thread": numpy_1_thread, "faiss_kernel": faiss_kernel, "faiss_flat": faiss_flat}
    times: dict[str, list[float]] = {name: [] for name in ways}
    same = 0
    out: dict[str, Any] = {"size": size, "k": K, "rounds": rounds}
    with noise(out), threadpool_limits(1, user_api="blas"):
        for q in queries[:5]:  # warm-up: pages, caches
            for fn in ways.values():
                fn(q)
        for q in queries:
            found = {}
            for name, fn in ways.items():
                start = time.perf_counter()
                found[name] = fn(q)
                times[name].append(time.perf_counter() - start)
            same += all(set(ids.tolist()) == set(found["faiss_flat"].tolist()) for ids in found.values())
    out.update({name: summary_ms(values) for name, values in times.items()})
    base = out["numpy_1_thread"]["p50_ms"]
    out["ratio_to_numpy_1_thread"] = {name: round(out[name]["p50_ms"] / base, 3) for name in ways}
    out["same_top_k_share"] = round(same / rounds, 4)
    return out


def main(argv: list[str] | None = None) -> int:
    from . import env

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.flat_scan", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    env.configure(fresh=False)
    results = {}
    for size in args.sizes:
        figures = results[str(size)] = run(size, rounds=args.rounds)
        ratios = figures["ratio_to_numpy_1_thread"]
        shown = "  ".join(f"{name} {ratio:.3f}" for name, ratio in ratios.items())
        print(
            f"{size:>9,}: p50 ms numpy_1_thread {figures['numpy_1_thread']['p50_ms']:.3f}"
            f"  faiss_kernel {figures['faiss_kernel']['p50_ms']:.3f}"
            f"  faiss_flat {figures['faiss_flat']['p50_ms']:.3f}  | ratio to numpy: {shown}"
            f"  | same top {K}: {figures['same_top_k_share']:.0%}",
            flush=True,
        )
    env.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (env.RESULTS_DIR / "flat_scan.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
