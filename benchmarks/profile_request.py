"""Where one text search request spends its time, besides the model and the scan.

``python -m benchmarks.profile_request [--size 10000] [--requests 60]`` grows a synthetic
library in the benchmark data directory (started afresh), rebuilds the index, then runs
``GET /?q=<new text>`` through the WSGI application under cProfile and prints the time per
part of the request: the text encode, the index search, the database, the template, and the
rest (Django's request handling, middleware, forms, notices), per request, with the functions
that took most of it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from typing import Any

#: Parts of a request, by the file a profiled function lives in (first match wins).
PARTS = (
    (
        "model (encode)",
        ("onnxruntime", "search/encoder/", "sentence_transformers", "torch", "transformers", "tokenizers"),
    ),
    ("index search", ("search/stores/faiss/", "faiss", "threadpoolctl")),
    ("database", ("django/db/", "sqlite3", "psycopg")),
    ("template", ("django/template/", "django/templatetags/", "django/utils/html.py", "templates/")),
)


def _part(filename: str) -> str:
    for name, needles in PARTS:
        if any(n in filename for n in needles):
            return name
    return "rest"


def breakdown(stats: pstats.Stats, requests: int) -> dict[str, Any]:
    """Own (tottime) seconds per part, per request, and the top functions of the rest."""
    per_part: dict[str, float] = {}
    rest: list[tuple[float, str]] = []
    for (filename, line, func), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        part = _part(filename)
        per_part[part] = per_part.get(part, 0.0) + tottime
        if part == "rest":
            rest.append((tottime, f"{filename}:{line}({func})"))
    rest.sort(reverse=True)
    return {
        "ms_per_request": {k: round(v * 1000 / requests, 2) for k, v in sorted(per_part.items())},
        "rest_top": [(round(t * 1000 / requests, 3), name) for t, name in rest[:15]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_request")
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--keep", action="store_true", help="reuse the benchmark data directory")
    args = parser.parse_args(argv)

    from . import env

    env.configure(fresh=not args.keep)
    import os

    os.environ["IMAGESEARCH_TORCH_THREADS"] = "1"
    env.build_model()
    env.setup_django()
    from django.core.management import call_command

    from . import rebuild
    from .library import ClusteredVectors, grow_library
    from .query import Wsgi, query_texts

    call_command("migrate", verbosity=0)
    grow_library(args.size, vectors=ClusteredVectors(), model=str(env.MODEL_DIR))
    rebuild.rebuild(args.size, cold=False)
    client = Wsgi()
    texts = query_texts(args.requests + 5, seed=args.size + 1)
    for text in texts[:5]:
        client.get("/", {"q": text})
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for text in texts[5:]:
        status, _ = client.get("/", {"q": text})
        assert status == 200, status
    profiler.disable()
    wall = (time.perf_counter() - started) * 1000 / args.requests
    env.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(env.RESULTS_DIR / "profile_request.prof")
    stats = pstats.Stats(profiler)
    result = breakdown(stats, args.requests)
    print(f"{args.requests} requests at {args.size:,}: {wall:.1f} ms per request (under cProfile)")
    for part, ms in result["ms_per_request"].items():
        print(f"  {part:16s} {ms:8.2f} ms")
    print("  rest, top functions (own time per request):")
    for ms, name in result["rest_top"]:
        print(f"    {ms:7.3f} ms  {name}")
    stats.sort_stats("cumulative").print_callees("search_page|queries.py.*\\(run\\)|images_search")
    print(f"profile: {env.RESULTS_DIR / 'profile_request.prof'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
