"""Target 5: requests per second of the search page at concurrency 16, with gunicorn.

Every request is a text the server has not seen (the model runs for each: the worst case for
the query cache), made as the query section makes its texts (``query.query_texts``: three or
four words and a number): an encode's cost grows with the text's tokens, so the load's texts are
like those whose encode the ideal counts. The configuration is ``./run``'s: gthread workers with
4 threads each and one torch thread per web process; the worker count is chosen for 2 cores (one
process per core) and compared, in the full run, with the alternatives.

Baseline, same run: the CPU work of one request measured alone (text encode + index search,
p50, from the query section at this size) spread over the cores: ``ideal = cores / (encode +
search)``. ratio = requests per second / ideal (below 1: what the server, the database, the
rendering and the load generator itself add, all on the same two cores).
"""

from __future__ import annotations

import os
from typing import Any

from . import env
from .timing import CpuAccount, noise
from .web import Gunicorn, load, summarise

CONCURRENCY = 16
#: Distinct texts made for one load: more than it sends (a text sent twice would be cached).
TEXTS = 30_000


def _run_one(*, workers: int, threads: int, seconds: float, seed: int) -> dict[str, Any]:
    from .query import query_texts

    pool = query_texts(TEXTS, seed=seed)
    log = env.RESULTS_DIR / f"gunicorn-throughput-{workers}x{threads}.log"
    log.unlink(missing_ok=True)
    server = Gunicorn(workers=workers, threads=threads, log=log).start()
    try:
        server.wait_ready(warm_requests=8 * workers)
        account = CpuAccount(server.proc.pid)
        result = load(server.port, concurrency=CONCURRENCY, seconds=seconds, texts=lambda i: pool[i % TEXTS])
        cpu = account.result()  # before the server stops: its processes are counted while alive
    finally:
        server.stop()
    summary = summarise(result)
    # Where the cores went: the server's CPU per answered request (against the ideal's encode +
    # search), the load generator's share (it runs on the same cores) and the cores left idle.
    cpu["server_ms_per_request"] = round(cpu.pop("server_s") * 1000 / max(1, summary["ok"]), 2)
    return {"workers": workers, "threads": threads, **summary, "cpu": cpu}


def run(*, size: int, seconds: float, query_figures: dict[str, Any], compare: bool) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0))
    out: dict[str, Any] = {"size": size, "concurrency": CONCURRENCY, "cores": cores}
    with noise(out):
        # Seeds of their own: texts unlike the query section's (seed = size) and each other's.
        main = _run_one(workers=cores, threads=4, seconds=seconds, seed=10 * size + 1)
        out["main"] = main
        if compare:
            out["alternatives"] = [
                _run_one(workers=w, threads=t, seconds=min(20.0, seconds), seed=10 * size + 2 + n)
                for n, (w, t) in enumerate(((1, 8), (2 * cores, 2)))
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


def _at_size(size: int, *, rounds: int) -> dict[str, Any]:
    """The library's index built, the query section's encode + search (the ideal's parts), then
    ``rounds`` throughput runs of 15 s, each against that same ideal."""
    from . import query, rebuild

    rebuild.rebuild(size, cold=False)
    figures = query.run(size, requests=60)
    runs = [run(size=size, seconds=15.0, query_figures=figures, compare=False) for _ in range(rounds)]
    return {"query_ratio": figures["ratio"], "runs": runs}


def main(argv: list[str] | None = None) -> int:
    from .library import sizes_main

    os.environ["IMAGESEARCH_TORCH_THREADS"] = "1"  # this process serves queries like a web process
    return sizes_main(
        argv,
        prog="python -m benchmarks.throughput",
        description="Requests per second at concurrency 16 against cores / (encode + search), "
        "and where the CPU went meanwhile (server per request, load generator, idle).",
        run=_at_size,
        results_name="throughput.json",
    )


if __name__ == "__main__":
    import sys

    sys.exit(main())
