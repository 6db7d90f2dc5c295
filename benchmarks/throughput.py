"""Target 5: requests per second of the search page at concurrency 16, with gunicorn.

Every request is a text the server has not seen (the model runs for each: the worst case for
the query cache). The configuration is ``./run``'s: gthread workers with 4 threads each and one
torch thread per web process; the worker count is chosen for 2 cores (one process per core)
and compared, in the full run, with the alternatives.

Baseline, same run: the CPU work of one request measured alone (text encode + index search,
p50, from the query section at this size) spread over the cores: ``ideal = cores / (encode +
search)``. ratio = requests per second / ideal (below 1: what the server, the database, the
rendering and the load generator itself add, all on the same two cores).
"""

from __future__ import annotations

import os
from typing import Any

from . import env
from .timing import noise
from .web import Gunicorn, load, summarise

CONCURRENCY = 16


def _run_one(*, workers: int, threads: int, seconds: float, size: int, tag: str) -> dict[str, Any]:
    log = env.RESULTS_DIR / f"gunicorn-throughput-{workers}x{threads}.log"
    log.unlink(missing_ok=True)
    server = Gunicorn(workers=workers, threads=threads, log=log).start()
    try:
        server.wait_ready(warm_requests=8 * workers)
        result = load(
            server.port,
            concurrency=CONCURRENCY,
            seconds=seconds,
            texts=lambda i: f"throughput {tag} {size} query number {i} red bicycle",
        )
    finally:
        server.stop()
    return {"workers": workers, "threads": threads, **summarise(result)}


def run(*, size: int, seconds: float, query_figures: dict[str, Any], compare: bool) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    out: dict[str, Any] = {"size": size, "concurrency": CONCURRENCY, "cores": cores}
    with noise(out):
        main = _run_one(workers=cores, threads=4, seconds=seconds, size=size, tag="main")
        out["main"] = main
        if compare:
            out["alternatives"] = [
                _run_one(workers=w, threads=t, seconds=min(20.0, seconds), size=size, tag=f"alt{w}")
                for w, t in ((1, 8), (2 * cores, 2))
            ]
    per_request = query_figures["encode"]["p50_ms"] + query_figures["product_search"]["p50_ms"]
    ideal = cores * 1000.0 / per_request
    out.update(
        {
            "requests_per_s": main["requests_per_s"],
            "errors": main["errors"],
            "ideal_requests_per_s": round(ideal, 2),
            "ratio": round(main["requests_per_s"] / ideal, 3),
        }
    )
    return out
