"""``python -m benchmarks run [--quick]``: the whole suite, one command.

Builds (once) the full-size random CLIP, starts from an empty benchmark database of its own,
then: ingest (real upload, real worker); the near-duplicate threshold on generated pictures and
their copies; and for each library size, grows the library with synthetic rows, rebuilds the
index from the database, measures queries and (at 10k and 100k) the near-duplicate scan; at the
middle size the web server's throughput, at the largest the approximate index, the memory of
several web processes and a generation switch under load; at the smallest size the encoder's
runtimes against each other (ONNX Runtime and torch, interleaved, with the same top 10) and
ONNX Runtime's arithmetic rate against the machine's BLAS (``blas_bound``); at
10k and 100k the search features' cost (issue 22), and at the end the emphasis's recall over a
library in memory (1M rows; 100k with ``--quick``).
Prints every figure with its target, writes
``benchmarks/results/latest.json`` and ``benchmarks/results/latency_vs_size.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from typing import Any

from . import env

FULL = {
    "sizes": [10_000, 100_000, 1_000_000],
    "ingest_images": 256,
    "query_requests": {10_000: 200, 100_000: 200, 1_000_000: 100},
    "throughput_size": 100_000,
    "throughput_seconds": 60.0,
    "throughput_compare": True,
    "hnsw_size": 100_000,
    "memory_workers": (1, 2, 4),
    "duplicates_sizes": (10_000, 100_000),
    "duplicates_rounds": 2,
    "threshold_originals": 40,
    "memory_sizes": (100_000, 1_000_000),
    "restart_size": 100_000,
    "threshold_sizes": (10_000, 20_000, 40_000, 80_000, 160_000, 320_000),
    "features_sizes": (10_000, 100_000),
    "features_rounds": 3,
    "emphasis_size": 1_000_000,
}
#: The full sizes without issue 4's extras (the cold rebuild, the ann comparison at the largest
#: size, which the query section's product search now covers, the throughput comparisons, HNSW at
#: 100k): the full run fitted into a half-hour slot of a shared machine.
LEAN = {
    **FULL,
    "throughput_compare": False,
    "hnsw_size": 10_000,
    "memory_workers": (1, 2),
    "threshold_sizes": (10_000, 20_000, 40_000, 80_000, 160_000),
    "cold_rebuild": False,
    "ann_at_largest": False,
}
QUICK = {
    "sizes": [10_000, 100_000],
    "encoder_queries": 30,
    "ingest_images": 48,
    "query_requests": {10_000: 80, 100_000: 80},
    "throughput_size": 100_000,
    "throughput_seconds": 15.0,
    "throughput_compare": False,
    "hnsw_size": 10_000,
    "memory_workers": (1, 2),
    "duplicates_sizes": (10_000, 100_000),
    "duplicates_rounds": 1,
    "threshold_originals": 16,
    "memory_sizes": (100_000,),
    "restart_size": 100_000,
    "threshold_sizes": (10_000, 20_000, 40_000, 80_000),
    "features_sizes": (10_000, 100_000),
    "features_rounds": 1,
    "emphasis_size": 100_000,
}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _meta(mode: str) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=env.ROOT, capture_output=True, text=True
    )
    import faiss
    import numpy
    import torch

    return {
        "mode": mode,
        "command": f"{os.path.relpath(sys.executable, env.ROOT)} -m benchmarks run"
        + {"quick": " --quick", "lean": " --lean"}.get(mode, ""),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit.stdout.strip(),
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "numpy": numpy.__version__,
        "torch_device": "cpu",
        "database": "sqlite",
    }


def run(quick: bool, lean: bool = False) -> dict[str, Any]:
    plan = QUICK if quick else LEAN if lean else FULL
    mode = "quick" if quick else "lean" if lean else "full"
    started = time.perf_counter()
    env.configure(fresh=True)
    os.environ["IMAGESEARCH_TORCH_THREADS"] = "1"  # this process serves queries like a web process
    _log("building (or reusing) the full-size random CLIP ...")
    env.build_model()
    env.setup_django()
    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise, no collectstatic

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from . import (
        ann,
        blas_bound,
        duplicate_threshold,
        duplicates,
        emphasis_recall,
        encoder_compare,
        flat_threshold,
        ingest,
        query,
        rebuild,
        restart,
        search_features,
        throughput,
    )
    from .library import ClusteredVectors, grow_library

    call_command("migrate", verbosity=0)
    results: dict[str, Any] = {"meta": _meta(mode), "sizes": {}}
    cores = len(os.sched_getaffinity(0))
    try:
        _log("flat scan latency against size (auto's threshold) ...")
        results["flat_threshold"] = flat_threshold.measure(plan["threshold_sizes"])
        _log(f"flat scan reaches {flat_threshold.BUDGET_MS} ms at {results['flat_threshold']['threshold']:,}")
        _log(f"ingest: {plan['ingest_images']} images through the upload view and a real worker ...")
        staff = get_user_model().objects.create_superuser("bench", "bench@example.org", "bench-pw-123456")
        staff_client = Client()
        staff_client.force_login(staff)
        results["ingest"] = ingest.run(images=plan["ingest_images"], staff_client=staff_client, batch=16)
        _log(f"ingest ratio {results['ingest']['ratio']}")
        _save_partial(results)
        # The library is synthetic from here on: remove the uploaded images.
        from gallery.models import Image

        Image.objects.all().delete()
        _log(f"near-duplicate threshold: {plan['threshold_originals']} pictures and their copies ...")
        results["duplicate_threshold"] = duplicate_threshold.measure(plan["threshold_originals"])

        vectors = ClusteredVectors()
        model = str(env.MODEL_DIR)
        largest = plan["sizes"][-1]
        for size in plan["sizes"]:
            section: dict[str, Any] = {}
            results["sizes"][str(size)] = section
            _log(f"library of {size:,}: inserting synthetic rows ...")
            section["grow"] = grow_library(size, vectors=vectors, model=model)
            _log("rebuilding the index from the database ...")
            section["rebuild"] = rebuild.rebuild(
                size, cold=size == largest and plan.get("cold_rebuild", True)
            )
            _log(f"rebuild {section['rebuild']['seconds']} s; text search requests ...")
            section["query"] = query.run(size, requests=plan["query_requests"][size])
            _log(f"query ratio {section['query']['ratio']}, p50 {section['query']['request']['p50_ms']} ms")
            if size in plan["features_sizes"]:
                _log("search features (issue 22) against the label-names-only search ...")
                found = section["search_features"] = search_features.run(size, rounds=plan["features_rounds"])
                _log(f"search features p50 ratios {found['ratios']}")
            if size == plan["sizes"][0]:
                _log("encoder: ONNX Runtime against torch, interleaved, same top 10 ...")
                results["encoder"] = encoder_compare.run(queries=plan.get("encoder_queries", 60))
                _log(f"text encode onnx / torch {results['encoder']['text_ratio']}")
                _log("encoder: its arithmetic rate against the machine's BLAS ...")
                bound = results["encoder"]["blas_bound"] = blas_bound.run()
                _log(f"share of the BLAS peak: text {bound['text_1_thread']['share_of_peak']}")
            if size in plan["duplicates_sizes"]:
                _log("near-duplicate scan against the kNN search alone ...")
                scan = section["duplicates"] = duplicates.run(size, rounds=plan["duplicates_rounds"])
                _log(f"near-duplicate scan {scan['scan_s']} s, ratio {scan['ratio']}")
            _save_partial(results)
            if size == plan["hnsw_size"] or size == largest:
                ids, vecs = _library_vectors()
                if size == plan["hnsw_size"]:
                    _log("approximate index: hnsw ...")
                    section["ann_hnsw"] = ann.compare("hnsw", ids, vecs, flat_dir=None)
                if size == largest and plan.get("ann_at_largest", True):
                    _log("approximate index: ivf ...")
                    from search.stores import faiss_store

                    section["ann_ivf"] = ann.compare("ivf", ids, vecs, flat_dir=faiss_store.index_dir())
                    section["ann_ivf"]["lists"] = _ivf_lists(len(ids))
                del ids, vecs
            if size == plan["throughput_size"]:
                _log(f"throughput: gunicorn, concurrency 16, {plan['throughput_seconds']:.0f} s ...")
                section["throughput"] = throughput.run(
                    size=size,
                    seconds=plan["throughput_seconds"],
                    query_figures=section["query"],
                    compare=plan["throughput_compare"],
                )
                _log(f"throughput {section['throughput']['requests_per_s']} requests/s")
            if size == plan["restart_size"]:
                _log("restart: gunicorn start to first search, against the model load alone ...")
                section["restart"] = restart.run(size, workers=cores)
                _log(f"restart ratio {section['restart']['ratio']}")
            if size in plan["memory_sizes"]:
                _log(f"memory of {plan['memory_workers']} gunicorn workers ...")
                section["memory"] = rebuild.memory(size, worker_counts=plan["memory_workers"])
                _log(f"+{section['memory']['growth_per_worker_mib']} MiB Pss per added worker")
            _save_partial(results)
            if size == largest:
                _log("generation switch under load ...")
                section["switch"] = rebuild.switch(size, workers=cores, before_s=5.0)
        _log(f"emphasis recall at {plan['emphasis_size']:,} rows in memory ...")
        # The product's candidates (the widened hybrid index and the picture index a rebuild
        # writes) beside the hybrid index alone; `python -m benchmarks.emphasis_recall` measures
        # the alternatives.
        results["emphasis_recall"] = emphasis_recall.run(
            plan["emphasis_size"], sides=("product",), pools=(500, 1000)
        )
        _log(f"emphasis: smallest pools reaching the target {results['emphasis_recall']['answer']}")
    finally:
        env.purge_queue()
    results["meta"]["total_s"] = round(time.perf_counter() - started, 1)
    return results


def _save_partial(results: dict[str, Any]) -> None:
    """The figures so far, in ``partial.json``: a run stopped before its end still leaves them."""
    from . import report

    env.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data = {**results, "figures": report.figures(results)}
    (env.RESULTS_DIR / "partial.json").write_text(json.dumps(data, indent=2) + "\n")


def _library_vectors():
    from search import encoder
    from search.stores import rows as store_rows

    return store_rows.hybrids_read(model=encoder.model_name())


def _ivf_lists(n: int) -> int:
    from search.stores.faiss import kinds

    return kinds.ivf_lists(n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run the suite")
    run_parser.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes")
    run_parser.add_argument("--lean", action="store_true", help="full sizes without issue 4's extras")
    report_parser = sub.add_parser("report", help="print figures and redraw the plot from a results file")
    report_parser.add_argument("path", nargs="?", default=str(env.RESULTS_DIR / "latest.json"))
    report_parser.add_argument("--markdown", action="store_true", help="the figures as a Markdown table")
    args = parser.parse_args(argv)

    from . import report

    if args.command == "report":
        with open(args.path) as f:
            results = json.load(f)
    else:
        results = run(args.quick, args.lean)
        env.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        results["figures"] = report.figures(results)
        (env.RESULTS_DIR / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    results["figures"] = report.figures(results)
    if args.command == "report" and args.markdown:
        print(report.markdown(results))
        return 0
    report.plot(results, env.RESULTS_DIR / "latency_vs_size.png")
    print(report.table(results))
    print(f"\nresults: {env.RESULTS_DIR / 'latest.json'}\nplot:    {env.RESULTS_DIR / 'latency_vs_size.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
