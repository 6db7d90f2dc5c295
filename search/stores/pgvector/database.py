"""Whether this database can hold the vectors, and creating what they need.

Used by the migration that creates the vector table (search/migrations/0007), by a
``post_migrate`` hook that creates it later (the extension installed after that migration ran),
and by the start-up check that refuses ``IMAGESEARCH_VECTOR_BACKEND=pgvector`` on a database
that cannot serve it. Nothing here runs on SQLite beyond a look at the vendor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, transaction

logger = logging.getLogger(__name__)

# halfvec needs 0.7, iterative index scans (filtered queries that fill their pages) 0.8.
EXTENSION_MINIMUM = (0, 8, 0)
TABLE = "search_imagevector"
CASCADE_CONSTRAINT = "search_imagevector_image_cascade"


@dataclass(frozen=True)
class Extension:
    available: str | None  # the version CREATE EXTENSION would install; None: not installed here
    installed: str | None  # the version in this database; None: not created

    @staticmethod
    def version_tuple(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("-")[0].split(".") if part.isdigit())


def extension(connection: Any) -> Extension:
    """The vector extension on this PostgreSQL (a catalogue query: no pgvector API for it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'"
        )
        row = cursor.fetchone()
    return Extension(*(row or (None, None)))


def table_exists(connection: Any) -> bool:
    with connection.cursor() as cursor:
        return TABLE in connection.introspection.table_names(cursor)


def vectors_table_ensure(schema_editor: Any, model: Any) -> str | None:
    """Create the extension (when this database user may) and the vector table with its cascade.

    Returns None when both exist afterwards, else why not, for a person (a migration on SQLite,
    or on a PostgreSQL without the extension, goes on without the table: the start-up check
    refuses the pgvector store there with that reason)."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return "the database is not PostgreSQL"
    found = extension(connection)
    if found.installed is None:
        if found.available is None:
            return "the PostgreSQL server has no vector extension installed"
        try:
            with transaction.atomic(using=connection.alias):  # a savepoint: a refusal aborts nothing
                schema_editor.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except DatabaseError as exc:
            logger.warning("could not create the vector extension: %s", exc)
            return f"this database user may not create the vector extension ({exc})".strip()
    if not table_exists(connection):
        schema_editor.create_model(model)
        qn = schema_editor.quote_name
        # Django 5.2 cannot declare ON DELETE CASCADE; with it, deleting images never reads this
        # table (the field is DO_NOTHING), which a SQLite deployment does not have.
        schema_editor.execute(
            f"ALTER TABLE {qn(TABLE)} ADD CONSTRAINT {qn(CASCADE_CONSTRAINT)} FOREIGN KEY "
            f"({qn('image_id')}) REFERENCES {qn('gallery_image')} ({qn('id')}) ON DELETE CASCADE"
        )
    return None


@dataclass(frozen=True)
class Unusable:
    reason: str  # for a person: what to install or run
    migrate_fixes: bool  # ``manage.py migrate`` completes the set-up (creates the extension, the table)


def unusable(connection: Any) -> Unusable | None:
    """Why this database cannot be the pgvector store, with what to do; None when it can."""
    if connection.vendor != "postgresql":
        return Unusable(
            f"IMAGESEARCH_VECTOR_BACKEND=pgvector needs PostgreSQL with the pgvector extension, but "
            f"DATABASE_URL is {connection.vendor}. Set DATABASE_URL=postgres://... (docs/operations.md, "
            f"'Several machines'), or IMAGESEARCH_VECTOR_BACKEND=faiss.",
            False,
        )
    minimum = ".".join(map(str, EXTENSION_MINIMUM))
    try:
        found = extension(connection)
        has_table = table_exists(connection)
    except DatabaseError as exc:
        return Unusable(f"The database could not be asked about the pgvector extension: {exc}", False)
    if found.installed is None and found.available is None:
        return Unusable(
            f"IMAGESEARCH_VECTOR_BACKEND=pgvector: this PostgreSQL server has no pgvector extension. "
            f"Install pgvector {minimum} or newer on the database server (e.g. the postgresql-NN-pgvector "
            f"package, or build it from source), then run `manage.py migrate`.",
            False,
        )
    version = found.installed or found.available or ""
    if Extension.version_tuple(version) < EXTENSION_MINIMUM:
        return Unusable(
            f"IMAGESEARCH_VECTOR_BACKEND=pgvector needs pgvector {minimum} or newer (halfvec and "
            f"iterative index scans); this database has {version}. Install a newer pgvector on the "
            f"server, then run `ALTER EXTENSION vector UPDATE` and `manage.py migrate`.",
            False,
        )
    if found.installed is None:
        return Unusable(
            "IMAGESEARCH_VECTOR_BACKEND=pgvector: the vector extension is not created in this database "
            "yet; `manage.py migrate` creates it when this database user may (else have an "
            "administrator run `CREATE EXTENSION vector;` in it, then `manage.py migrate` again).",
            True,
        )
    if not has_table:
        return Unusable(
            "IMAGESEARCH_VECTOR_BACKEND=pgvector: the vector table is not created yet; `manage.py migrate` "
            "creates it.",
            True,
        )
    connection.ensure_connection()
    found_crash = hnsw_unusable(connection.connection)
    if found_crash is not None:
        connection.close()  # the server reset every connection: this one is dead
    return found_crash


def hnsw_unusable(pg: Any) -> Unusable | None:
    """The refusal, when building an HNSW index kills this server's backend (:func:`hnsw_crash`)."""
    died = hnsw_crash(pg)
    if died is None:
        return None
    return Unusable(f"{HNSW_CRASHED} (its backend died: {died}). {HNSW_CRASHED_WHAT_TO_DO}", False)


HNSW_CRASHED = (
    "PostgreSQL's pgvector crashed building an HNSW index: this binary needs CPU instructions this "
    "machine lacks"
)
HNSW_CRASHED_WHAT_TO_DO = (
    "Install a pgvector built for this CPU on the database server (Debian's postgresql-NN-pgvector "
    "package, or `make && make install` from pgvector's source on this machine, which builds for "
    "the CPU it runs on), or run the database on a machine whose CPU that binary supports."
)
# The probe's statements, in one rolled-back transaction on a temporary table: both column types
# the store indexes (halfvec, and vector for the export of full-precision vectors).
HNSW_PROBE = (
    "CREATE TEMPORARY TABLE imagesearch_hnsw_probe (v vector(4), h halfvec(4)) ON COMMIT DROP",
    "INSERT INTO imagesearch_hnsw_probe SELECT ARRAY[random(), random(), random(), random()], "
    "ARRAY[random(), random(), random(), random()]::halfvec FROM generate_series(1, 64)",
    "CREATE INDEX ON imagesearch_hnsw_probe USING hnsw (v vector_ip_ops)",
    "CREATE INDEX ON imagesearch_hnsw_probe USING hnsw (h halfvec_ip_ops)",
    "SELECT count(*) FROM (SELECT 1 FROM imagesearch_hnsw_probe ORDER BY h <#> '[1,0,0,0]' LIMIT 3) s",
)


def hnsw_crash(pg: Any) -> str | None:
    """Build a tiny HNSW index on the open psycopg connection ``pg`` and see that the server
    survives; when its backend died doing it, the error the connection saw (its first line).

    A pgvector compiled for instructions this CPU lacks (AVX-512, say) loads, answers scalar
    distance queries, and dies with SIGILL on the first HNSW build, which otherwise surfaces as a
    worker losing its connection on the first upload. Everything runs in a transaction that is
    rolled back. A probe that cannot run for another reason (a database user who may not create
    temporary tables) answers None: that is not this failure, and the other checks report theirs."""
    import psycopg

    try:
        with pg.transaction(force_rollback=True), pg.cursor() as cursor:
            for statement in HNSW_PROBE:
                cursor.execute(statement)
    except psycopg.Error as exc:
        if pg.broken or pg.closed:
            logger.error("the HNSW probe lost its connection: %s", exc)
            return str(exc).strip().splitlines()[0]
        logger.warning("the HNSW probe could not run: %s", exc)
    return None
