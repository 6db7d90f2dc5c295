"""The emphasis's recall on pgvector: the hybrid pool alone against the hybrid pool united with
the rows nearest by picture (``ImageVector.picture`` and its HNSW index), and what the second
index costs to build and store, in one run.

    .venv/bin/python -m benchmarks.pgvector_emphasis [--size 100000] [--queries 200] [--database-url URL]

The library and queries are :mod:`benchmarks.emphasis_recall`'s (clustered image vectors, label
text vectors with CLIP's modality gap, 1-3 labels per image, hybrids as ``encoder.combine``
makes them; text queries at cosine ~0.9 to a label's vector, image queries at ~0.95 to a stored
image), written as ready rows into a fresh database (``--database-url``: that database is
dropped and created; else an embedded PostgreSQL of this run's own, as
:mod:`benchmarks.pgvector_compare` starts). Then:

* build: the product's vector rows written from the stored rows (``vectors_backfill``: hybrid and
  picture), then the hybrid's HNSW index and the picture's, each timed (``hnsw_index``, the
  product's m and ef_construction); the table's bytes with both columns and with the hybrid
  alone (a copy without the picture column), and each index's bytes;
* candidates: the product's store queries (``store.nearest``: the same filters, iterative scan,
  rows read with their images) by hybrid and by picture, 1000 each, at ``hnsw.ef_search`` 400
  (the setting's default) and at the emphasis's breadth (``emphasis_ef_search``); a pool of
  ``p`` is the first ``p`` (the scan is in distance order, so it is what ``LIMIT p`` returns);
* recall@10 of the union re-scored with :func:`search.query.explain.scores` from the float32
  parts, against the brute-force alpha-scores of every row, tie-aware as emphasis_recall's.

Writes ``benchmarks/results/pgvector-emphasis-<size>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from . import env
from .emphasis_recall import ALPHAS, exact_thresholds, library_build
from .library import ClusteredVectors, _insert_sql, _labels, _placeholder, queries_near, ready_row_template
from .timing import summary_ms

MODEL = "benchmark-model"
POOL = 1000  # each search's LIMIT; smaller pools are its prefixes
HYBRID_POOLS = (500, 1000)
PICTURE_POOLS = (0, 200, 500, 1000)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _fresh_database(url: str | None) -> str:
    import psycopg

    if url is None:
        from .pgvector_compare import _start_database

        return _start_database()
    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url


def _rows_insert(lib: Any, vectors: ClusteredVectors, chunk: int = 5000) -> np.ndarray:
    """The library as ready image rows with their labels; their ids, row by row."""
    from django.db import connection, transaction
    from django.utils import timezone

    from gallery.models import Image

    _placeholder()
    label_pks = np.array(_labels(MODEL, vectors))  # their text vectors are lib.texts
    now = timezone.now()
    fields, base, varying = ready_row_template(MODEL, now)
    through = Image.labels.through
    insert_link = _insert_sql(through, [through._meta.get_field("image"), through._meta.get_field("label")])
    table = connection.ops.quote_name(Image._meta.db_table)
    ids = []
    for start in range(0, len(lib.images), chunk):
        stop = min(len(lib.images), start + chunk)
        rows = []
        for i in range(start, stop):
            params = list(base)
            values = (
                f"emphasis-{i}.jpg",
                f"emphasis-{i:054d}",
                lib.images[i].astype("<f4").tobytes(),
                lib.hybrids[i].astype("<f4").tobytes(),
            )
            for slot, value in zip(varying, values, strict=True):
                params[slot] = value
            rows.append(params)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(_insert_sql(Image, fields), rows)
            cursor.execute(
                f"SELECT id FROM {table} WHERE sha256 >= %s AND sha256 <= %s ORDER BY sha256",
                [f"emphasis-{start:054d}", f"emphasis-{stop - 1:054d}"],
            )
            pks = [pk for (pk,) in cursor.fetchall()]
            assert len(pks) == stop - start
            links = [
                (pk, int(label_pks[j]))
                for pk, row in zip(pks, lib.label_ids[start:stop], strict=True)
                for j in row
                if j >= 0
            ]
            cursor.executemany(insert_link, links)
        ids += pks
    return np.array(ids)


def _bytes(sql: str, *args: Any) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, list(args))
        return int(cursor.fetchone()[0])


def _build(dim: int, size: int) -> dict[str, Any]:
    """The vector rows, then each HNSW index, timed; the table's and the indexes' bytes."""
    from django.db import connection, transaction

    from search.models import ImageVector
    from search.stores.pgvector import store

    store._indexed.add((connection.alias, dim))  # written first, indexed after: bulk builds
    t = time.perf_counter()
    while store.vectors_backfill(MODEL, limit=50_000, chunk=2000):
        pass
    out: dict[str, Any] = {"write_rows_s": round(time.perf_counter() - t, 1)}
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE search_imagevector")
    for column in store.COLUMNS:
        _log(f"HNSW build: {column}")
        t = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
            with connection.schema_editor(atomic=False) as editor:
                editor.add_index(ImageVector, store.hnsw_index(dim, column))
        seconds = time.perf_counter() - t
        index_bytes = _bytes("SELECT pg_relation_size(%s)", store.index_name(dim, column))
        out[column] = {
            "index_s": round(seconds, 1),
            "index_bytes": index_bytes,
            "index_bytes_per_image": round(index_bytes / size, 1),
        }
        _log(f"  {out[column]}")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE search_imagevector")
        cursor.execute(
            "CREATE TEMPORARY TABLE hybrid_only AS "
            "SELECT image_id, model, dimension, embedding, updated_at FROM search_imagevector"
        )
    table = _bytes("SELECT pg_table_size('search_imagevector')")
    hybrid_only = _bytes("SELECT pg_table_size('hybrid_only')")
    out["table_bytes"] = {"with_picture": table, "hybrid_only": hybrid_only}
    out["table_bytes_per_image"] = {
        "with_picture": round(table / size, 1),
        "hybrid_only": round(hybrid_only / size, 1),
    }
    out["total_bytes"] = {
        "with_picture": table + out["embedding"]["index_bytes"] + out["picture"]["index_bytes"],
        "hybrid_only": hybrid_only + out["embedding"]["index_bytes"],
    }
    return out


def _candidates(queries: np.ndarray, position: dict[int, int], ef_search: int) -> dict[str, Any]:
    """Each query's 1000 nearest rows by hybrid and by picture (row positions), and each
    search's time, through the store's own query."""
    from search.stores.pgvector import store

    found: dict[str, list[np.ndarray]] = {column: [] for column in store.COLUMNS}
    times: dict[str, list[float]] = {column: [] for column in store.COLUMNS}
    for q in queries:
        for column in store.COLUMNS:
            t = time.perf_counter()
            rows = store.nearest(q, model=MODEL, needed=POOL, column=column, ef_search=ef_search)
            times[column].append(time.perf_counter() - t)
            found[column].append(np.array([position[image.pk] for image, _ in rows]))
    return {"found": found, "ms": {column: summary_ms(times[column]) for column in store.COLUMNS}}


def _recall(
    lib: Any, queries: np.ndarray, kinds: np.ndarray, found: dict[str, list[np.ndarray]], thresholds
) -> dict:
    from search.query import explain

    out: dict[str, Any] = {}
    for hybrid_pool in HYBRID_POOLS:
        for picture_pool in PICTURE_POOLS:
            hits: dict[str, list[float]] = {}
            sizes = []
            for row, q in enumerate(queries):
                parts = [found["embedding"][row][:hybrid_pool], found["picture"][row][:picture_pool]]
                cand = np.unique(np.concatenate(parts))
                sizes.append(len(cand))
                for alpha in ALPHAS:
                    scores = explain.scores(
                        q, lib.images[cand], lib.labels[cand], lib.has_labels[cand], alpha
                    )
                    top = -np.partition(-scores, 9)[:10] if len(scores) > 10 else scores
                    hit = np.sum(top >= thresholds[alpha][row] - 1e-6) / 10
                    hits.setdefault(f"{kinds[row]}@{alpha:g}", []).append(float(hit))
            key = f"hybrid {hybrid_pool} + picture {picture_pool}"
            out[key] = {name: round(float(np.mean(v)), 4) for name, v in hits.items()}
            out[key]["median_candidates"] = int(np.median(sizes))
    return out


def run(size: int, queries: int, database_url: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    url = _fresh_database(database_url)
    env.configure(fresh=True)
    os.environ.update(
        {"DATABASE_URL": url, "IMAGESEARCH_CLIP_MODEL": MODEL, "IMAGESEARCH_VECTOR_BACKEND": "pgvector"}
    )
    env.setup_django()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from search.stores.pgvector import store

    call_command("migrate", verbosity=0)
    out: dict[str, Any] = {
        "size": size,
        "queries": {"text": queries, "image": queries},
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cores": len(os.sched_getaffinity(0)),
        "load_average_at_start": os.getloadavg(),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT split_part(version(), ' ', 2), extversion FROM pg_extension WHERE extname = 'vector'"
        )
        out["postgresql"], out["pgvector"] = cursor.fetchone()
    _log(f"library of {size} rows")
    vectors = ClusteredVectors()
    lib = library_build(size, vectors)
    t = time.perf_counter()
    ids = _rows_insert(lib, vectors)
    out["insert_rows_s"] = round(time.perf_counter() - t, 1)
    lib.hybrids = None
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    _log("vector rows and HNSW indexes")
    out["build"] = _build(vectors.dim, size)
    q_text = queries_near(lib.texts, queries, cosine=0.9, seed=11)
    q_image = queries_near(lib.images, queries, cosine=0.95, seed=12)
    all_q = np.concatenate([q_text, q_image])
    kinds = np.array(["text"] * queries + ["image"] * queries)
    _log("brute force")
    thresholds = exact_thresholds(lib, all_q)
    position = {int(pk): i for i, pk in enumerate(ids)}
    out["ef_search"] = {}
    for ef in sorted({settings.IMAGESEARCH_PGVECTOR_EF_SEARCH, store.emphasis_ef_search()}):
        _log(f"candidates at ef_search {ef}")
        store.nearest(all_q[0], model=MODEL, needed=POOL, ef_search=ef)  # warm
        got = _candidates(all_q, position, ef)
        out["ef_search"][str(ef)] = {
            "search_ms_limit_1000": got["ms"],
            "recall": _recall(lib, all_q, kinds, got["found"], thresholds),
        }
        print(json.dumps(out["ef_search"][str(ef)], indent=1), flush=True)
    out["load_average_at_end"] = os.getloadavg()
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pgvector_emphasis", description=__doc__)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--database-url", help="a database this run drops, creates and fills")
    args = parser.parse_args(argv)
    out = run(args.size, args.queries, args.database_url)
    env.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = env.RESULTS_DIR / f"pgvector-emphasis-{args.size}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=1))
    _log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
