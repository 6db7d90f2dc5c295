"""Target 6: the near-duplicate scan's cost at a library size, against the flat kNN search alone.

The product path: ``search.duplicates.scan.duplicates_scan(force=True)``, as the worker runs it (read
every ready row's image vector from the database, exact k-nearest-neighbour search of every
image in batches with faiss, keep the pairs at or above the threshold, group them, write the
groups in one transaction, progress after every batch). Baseline, in the same run and
interleaved with it: the exact k-nearest-neighbour search alone (a faiss ``IndexFlatIP`` over the
same vectors, already in memory, every vector a query, the same k and batch), the floor any
exact scan pays. ratio = scan seconds / baseline seconds. From ``APPROXIMATE_FROM`` images on the
scan searches an IVF index instead (``search.stores.faiss.neighbours``); the pairs the exact search
finds at or above the threshold are then the reference for the scan's recall.

The library's rows are :mod:`benchmarks.library`'s, whose image vectors are their hybrids; one
row in a hundred is made a near copy of the row before it (cosine ~0.99), so that the scan has
groups to find and write, about as many as a library where 1 % of the pictures were stored twice.

``python -m benchmarks.duplicates [--sizes 10000 100000] [--rounds N]`` runs this section alone on
a library of its own; ``python -m benchmarks run`` runs it at each size of the suite.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np

from .timing import noise

COPY_EVERY = 100
#: Near copies as alike as a re-encoded picture, and as a cropped one just above the threshold.
COPY_COSINES = (0.99, 0.96)


def plant_copies(model: str) -> int:
    """Make every ``COPY_EVERY``-th row's image vector a near copy of the previous row's
    (idempotent: always derived from that row's hybrid, which is its original image vector)."""
    from django.db import connection, transaction

    from gallery.models import Image

    rows = Image.objects.filter(sha256__startswith="synthetic-").order_by("pk")
    pks = list(rows.values_list("pk", flat=True))
    pairs = [(pks[i], pks[i - 1]) for i in range(COPY_EVERY, len(pks), COPY_EVERY)]
    if not pairs:
        return 0
    sources = dict(Image.objects.filter(pk__in=[s for _, s in pairs]).values_list("pk", "hybrid_vector"))
    rng = np.random.default_rng(5)
    updates = []
    for n, (pk, source) in enumerate(pairs):
        v = np.frombuffer(sources[source], dtype="<f4")
        cosine = COPY_COSINES[n % len(COPY_COSINES)]
        sigma = math.sqrt((1.0 / cosine**2 - 1.0) / len(v))
        copy = v + rng.standard_normal(len(v), dtype=np.float32) * sigma
        updates.append(((copy / np.linalg.norm(copy)).astype("<f4").tobytes(), pk))
    table = connection.ops.quote_name(Image._meta.db_table)
    column = connection.ops.quote_name(Image._meta.get_field("image_vector").column)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET {column} = %s WHERE id = %s", updates)
    return len(updates)


def _knn_alone(
    vectors: np.ndarray, k: int, batch: int, threshold: float
) -> tuple[float, set[tuple[int, int]]]:
    """Seconds of the exact search alone, and (untimed) the pairs of row positions it finds at
    or above the threshold: what the scan should find."""
    import faiss

    seconds, pairs = 0.0, set()
    started = time.perf_counter()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    seconds += time.perf_counter() - started
    for start in range(0, len(vectors), batch):
        t = time.perf_counter()
        scores, found = index.search(vectors[start : start + batch], k + 1)
        seconds += time.perf_counter() - t
        rows, cols = np.nonzero(
            (scores >= threshold) & (found != np.arange(start, start + len(found))[:, None])
        )
        pairs.update(
            (min(start + r, int(found[r, c])), max(start + r, int(found[r, c])))
            for r, c in zip(rows, cols, strict=True)
        )
    return seconds, pairs


def _found_pairs(ids: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of row positions the stored groups hold (every two members of a group)."""
    from search.models import DuplicateMember

    position = {int(pk): i for i, pk in enumerate(ids)}
    groups: dict[int, list[int]] = {}
    for group, image in DuplicateMember.objects.values_list("group_id", "image_id"):
        groups.setdefault(group, []).append(position[image])
    return {(min(a, b), max(a, b)) for members in groups.values() for a in members for b in members if a != b}


def run(size: int, *, rounds: int = 1) -> dict[str, Any]:
    from django.conf import settings

    from search import encoder
    from search.duplicates import scan as duplicates
    from search.stores import rows as store_rows
    from search.stores.faiss import neighbours

    out: dict[str, Any] = {"size": size, "k": duplicates.NEIGHBOURS, "batch": neighbours.NEIGHBOUR_BATCH}
    with noise(out):
        model = encoder.model_name()
        out["planted_copies"] = plant_copies(model)
        ids, vectors = store_rows.vectors_read(
            duplicates._candidates(model).order_by("pk"), "image_vector", model=model
        )
        threshold = settings.IMAGESEARCH_DUPLICATE_THRESHOLD
        baseline, scans, reports = [], [], []
        for _ in range(rounds):
            seconds, exact = _knn_alone(vectors, duplicates.NEIGHBOURS, neighbours.NEIGHBOUR_BATCH, threshold)
            baseline.append(seconds)
            report = duplicates.duplicates_scan(force=True)
            scans.append(report.seconds)
            reports.append(report)
        del vectors
        found = _found_pairs(ids)
        # Every exact pair the scan's groups hold (a group can also join pairs below the
        # threshold through a third member, which this does not count against it).
        out["recall_of_exact_pairs"] = round(len(exact & found) / max(1, len(exact)), 4)
        out["exact_pairs"] = len(exact)
        out["approximate"] = len(ids) >= neighbours.APPROXIMATE_FROM
        last = reports[-1]

        def median(values) -> float:
            return round(float(np.median(values)), 2)

        out.update(
            threshold=threshold,
            images=last.images,
            pairs=last.pairs,
            groups=last.groups,
            scan_s=median(scans),
            scan_read_s=median([r.read_seconds for r in reports]),
            scan_search_s=median([r.search_seconds for r in reports]),
            knn_alone_s=median(baseline),
            rounds=rounds,
        )
        out["ratio"] = round(out["scan_s"] / max(1e-9, out["knn_alone_s"]), 3)
        out["per_image_ms"] = round(1000 * out["scan_s"] / max(1, last.images), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    from .library import sizes_main

    return sizes_main(
        argv,
        prog="python -m benchmarks.duplicates",
        description=__doc__.splitlines()[0],
        run=run,
        results_name="duplicates.json",
    )


if __name__ == "__main__":
    sys.exit(main())
