"""The labelling pass's cost (suggested labels and likely mislabels) at a library size, against the
near-duplicate scan in the same run, and what its spacing leaves of the worker's time for ingest.

The product path: ``search.labelling.passes.labelling_pass()``, as the worker runs it (read every
ready row's image vector and the label vectors from the database, fit the calibration on the
labelled images, score every image against every label, find the likely mislabels, replace the
stored suggestions and mislabels in one transaction). Baseline, in the same run, interleaved with
it: ``search.duplicates.duplicates_scan(force=True)``, the background pass the worker already runs
after ingest. ratio = labelling seconds / scan seconds.

Ingest: a pass is scheduled at least ``LABELLING_SPACING`` (10) times its last duration after the
request (``search.dispatch``), so during a long ingest the worker's share of time spent labelling
is at most ``pass / (pass + countdown)``; ``ingest_share`` reports that share with the countdown
the dispatcher computes from the measured pass. The product's bound is 10 %; the cap on the
countdown (``LABELLING_MAX_COUNTDOWN``) would break it for a pass over 90 s, which the figure shows.

The library's rows are :mod:`benchmarks.library`'s: 1000 labels, two per image, text vectors that
lean towards their images' clusters as captions do; one row in a hundred is relabelled with a
label of another cluster (a planted mislabel).

``python -m benchmarks.labelling [--sizes 10000 100000] [--rounds N]``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .timing import noise

MISLABEL_EVERY = 100


def plant_mislabels() -> list[int]:
    """Give every ``MISLABEL_EVERY``-th synthetic row, instead of its first label, the first label
    of the row 37 places on (another cluster's, mostly). Idempotent. Returns the rows' ids."""
    from django.db import transaction

    from gallery.models import Image

    through = Image.labels.through
    pks = list(
        Image.objects.filter(sha256__startswith="synthetic-").order_by("pk").values_list("pk", flat=True)
    )
    firsts: dict[int, int] = {}
    for image_id, label_id in through.objects.order_by("image_id", "id").values_list("image_id", "label_id"):
        firsts.setdefault(image_id, label_id)
    planted = []
    with transaction.atomic():
        for n in range(MISLABEL_EVERY, len(pks) - 37, MISLABEL_EVERY):
            pk, wrong = pks[n], firsts[pks[n + 37]]
            planted.append(pk)
            if through.objects.filter(image_id=pk, label_id=wrong).exists():
                continue  # planted by an earlier run (or the same label anyway)
            link = through.objects.filter(image_id=pk).order_by("id").first()
            through.objects.filter(pk=link.pk).update(label_id=wrong)
    return planted


def run(size: int, *, rounds: int = 1) -> dict[str, Any]:
    from search import dispatch
    from search.duplicates import scan as duplicates
    from search.labelling.passes import labelling_pass
    from search.models import Mislabel

    out: dict[str, Any] = {"size": size}
    with noise(out):
        planted = plant_mislabels()
        out["planted_mislabels"] = len(planted)
        scans, passes, reports = [], [], []
        for _ in range(rounds):
            scans.append(duplicates.duplicates_scan(force=True).seconds)
            report = labelling_pass()
            assert report.ran, report.reason
            passes.append(report.seconds)
            reports.append(report)
        last = reports[-1]

        def median(values) -> float:
            return round(float(np.median(values)), 2)

        pass_s = median(passes)
        countdown = min(
            dispatch.LABELLING_MAX_COUNTDOWN,
            max(dispatch.REBUILD_DELAY, dispatch.LABELLING_SPACING * pass_s),
        )
        out.update(
            images=last.images,
            labels=last.labels,
            suggestions=last.suggestions,
            mislabels=last.mislabels,
            planted_found=Mislabel.objects.filter(image_id__in=planted).values("image_id").distinct().count(),
            labelling_s=pass_s,
            duplicate_scan_s=median(scans),
            rounds=rounds,
            countdown_s=round(countdown, 1),
            ingest_share=round(pass_s / (pass_s + countdown), 4),
        )
        out["ratio"] = round(pass_s / max(1e-9, out["duplicate_scan_s"]), 3)
        out["per_image_ms"] = round(1000 * pass_s / max(1, last.images), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    from .library import sizes_main

    return sizes_main(
        argv,
        prog="python -m benchmarks.labelling",
        description=__doc__.splitlines()[0],
        run=run,
        results_name="labelling.json",
    )


if __name__ == "__main__":
    sys.exit(main())
