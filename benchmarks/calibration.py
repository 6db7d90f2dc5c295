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

import sys
from typing import Any

import numpy as np

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
    from .library import sizes_main

    return sizes_main(
        argv,
        prog="python -m benchmarks.calibration",
        description=__doc__.splitlines()[0],
        run=run,
        results_name="calibration.json",
    )


if __name__ == "__main__":
    sys.exit(main())
