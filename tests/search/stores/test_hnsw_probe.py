"""A pgvector built for instructions this CPU lacks loads, answers scalar queries, and kills its
backend with SIGILL on the first HNSW build. The start-up probe (search.stores.pgvector.database)
builds a tiny HNSW index and says so in words, for the product's start-up checks and for ./test.

The stand-in is a real PostgreSQL of this test's own whose backend is killed with SIGILL as the
probe's CREATE INDEX arrives: the server logs "terminated by signal 4: Illegal instruction" and
resets every connection, as with the binary that needs AVX-512."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from search.stores.pgvector import database
from tests.support import pgserver


@pytest.fixture(scope="module")
def private_postgres(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A PostgreSQL of this module's own: crashing the test run's server would end its pass."""
    directory = tmp_path_factory.mktemp("crashing-pg")
    url = pgserver.start(directory)
    try:
        yield url, directory
    finally:
        pgserver.stop(directory)


class _CursorDyingOnHnsw:
    """A real cursor whose backend receives SIGILL when an HNSW build is sent to it."""

    def __init__(self, cursor: psycopg.Cursor) -> None:
        self._cursor = cursor

    def execute(self, statement: str, *args, **kwargs):
        if "USING hnsw" in statement:
            [backend] = self._cursor.execute("SELECT pg_backend_pid()").fetchone()
            os.kill(backend, signal.SIGILL)
        return self._cursor.execute(statement, *args, **kwargs)

    def __enter__(self) -> _CursorDyingOnHnsw:
        return self

    def __exit__(self, *exc_info) -> None:
        self._cursor.close()


class _ConnectionDyingOnHnsw:
    def __init__(self, pg: psycopg.Connection) -> None:
        self._pg = pg

    def cursor(self) -> _CursorDyingOnHnsw:
        return _CursorDyingOnHnsw(self._pg.cursor())

    def __enter__(self) -> _ConnectionDyingOnHnsw:
        return self

    def __exit__(self, *exc_info) -> None:
        self._pg.close()

    def __getattr__(self, name: str):
        return getattr(self._pg, name)


def _connect(url: str) -> psycopg.Connection:
    for _ in range(60):  # after a crash the server takes a moment to leave recovery
        try:
            pg = psycopg.connect(url, autocommit=True, connect_timeout=5)
            pg.execute("CREATE EXTENSION IF NOT EXISTS vector")
            return pg
        except psycopg.OperationalError:
            time.sleep(0.5)
    raise AssertionError(f"the private PostgreSQL at {url} did not come back")


def _server_logged(directory: Path, line: str) -> bool:
    """Whether the server's log shows ``line`` (the postmaster writes it just after the crash)."""
    for _ in range(40):
        if line in (directory / "data" / "log").read_text(errors="replace"):
            return True
        time.sleep(0.25)
    return False


def test_a_backend_killed_by_an_illegal_instruction_on_an_hnsw_build_is_refused_in_words(private_postgres):
    url, directory = private_postgres
    with _connect(url) as pg:
        found = database.hnsw_unusable(_ConnectionDyingOnHnsw(pg))
    assert found is not None
    assert found.reason.startswith(
        "PostgreSQL's pgvector crashed building an HNSW index: this binary needs CPU instructions "
        "this machine lacks (its backend died: "
    )
    assert "Install a pgvector built for this CPU" in found.reason
    assert found.migrate_fixes is False
    assert _server_logged(directory, "terminated by signal 4: Illegal instruction")


def test_a_server_whose_hnsw_builds_work_passes_the_probe_and_keeps_nothing(private_postgres):
    url, _ = private_postgres
    with _connect(url) as pg:
        assert database.hnsw_unusable(pg) is None
        assert pg.execute("SELECT to_regclass('imagesearch_hnsw_probe')").fetchone() == (None,)


def test_the_test_runner_stops_the_postgresql_pass_with_the_same_sentence(private_postgres, monkeypatch):
    url, _ = private_postgres
    real_connect = psycopg.connect
    monkeypatch.setattr(psycopg, "connect", lambda *a, **k: _ConnectionDyingOnHnsw(real_connect(*a, **k)))
    reason = pgserver.probe(url)
    monkeypatch.undo()
    assert reason is not None
    assert reason.startswith("PostgreSQL's pgvector crashed building an HNSW index: this binary needs")
    assert "The PostgreSQL pass stops here" in reason
    _connect(url).close()  # and the server came back for the next test
