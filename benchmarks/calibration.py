"""The cut-off's calibration (search.calibration) at a library size, against the index rebuild it
follows in the same run.

The product path: ``search.calibration.library.library_calibrate()``, as the rebuild task runs it
after a rebuild that served requests (read every searchable id, draw a uniform sample of at most
``MAX_SAMPLE``, read its vectors and labels a chunk at a time, score up to 200 labels' words and
three images each against the sample's hybrids, store the curves). Baseline, interleaved with it:
``search.ingest.rebuild.index_rebuild()`` (FAISS: read every hybrid, build, write a generation).
ratio = calibration seconds / rebuild seconds: what calibrating adds to each rebuild.

The library's rows are :mod:`benchmarks.library`'s (1000 labels, two per image).

``python -m benchmarks.calibration [--sizes 10000 100000] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from . import env
from .timing import noise


def run(size: int, *, rounds: int = 1) -> dict[str, Any]:
    from search.calibration import cutoffs
    from search.calibration.library import library_calibrate
    from search.ingest import rebuild

    out: dict[str, Any] = {"size": size}
    with noise(out):
        rebuilds, calibrations, reports = [], [], []
        for _ in range(rounds):
            built = rebuild.index_rebuild()
            assert built.built, built
            rebuilds.append(built.seconds)
            report = library_calibrate()
            assert report.ran, report.error
            calibrations.append(report.seconds)
            reports.append(report)
        last = reports[-1]

        def median(values) -> float:
            return round(float(np.median(values)), 2)

        out.update(
            library=last.library,
            sample=last.sample,
            labels=last.labels,
            note=last.note,
            calibration_s=median(calibrations),
            rebuild_s=median(rebuilds),
            rounds=rounds,
            thresholds={
                f"{kind}@{level}": cutoffs.cutoff(kind, level).threshold
                for kind in cutoffs.KINDS
                for level in cutoffs.SHOWN_LEVELS
            },
        )
        out["ratio"] = round(out["calibration_s"] / max(1e-9, out["rebuild_s"]), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.calibration", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    env.configure(fresh=True)
    env.build_model()
    env.setup_django()
    from django.core.management import call_command

    from .library import ClusteredVectors, grow_library

    call_command("migrate", verbosity=0)
    vectors, results = ClusteredVectors(), {}
    for size in args.sizes:
        grow_library(size, vectors=vectors, model=str(env.MODEL_DIR))
        results[str(size)] = run(size, rounds=args.rounds)
        print(json.dumps(results[str(size)]), flush=True)
    env.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (env.RESULTS_DIR / "calibration.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
