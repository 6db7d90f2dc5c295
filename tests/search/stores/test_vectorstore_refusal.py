"""IMAGESEARCH_VECTOR_BACKEND=pgvector on a database that cannot serve it is refused at start-up
with what to install (search.stores.checks): never a traceback on the first search."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from search.stores import checks
from search.stores.pgvector import database
from tests.support.constants import ROOT


class _FakePostgres:
    vendor = "postgresql"
    connection = "the server's own connection"
    closed = False

    def ensure_connection(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _env(**overrides: str) -> dict[str, str]:
    return {**os.environ, "DJANGO_DEBUG": "1", "IMAGESEARCH_VECTOR_BACKEND": "pgvector", **overrides}


def test_manage_py_refuses_pgvector_on_sqlite_saying_what_to_set():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=_env(DATABASE_URL="sqlite:///" + str(ROOT / "no-such-dir" / "x.sqlite3")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "search.E001" in result.stderr
    assert "needs PostgreSQL with the pgvector extension" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_celery_worker_refuses_to_start_on_sqlite_with_the_reason(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "imagesearch", "worker", "--pool", "solo"],
        cwd=ROOT,
        env=_env(
            DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
            CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Refusing to start: IMAGESEARCH_VECTOR_BACKEND=pgvector needs PostgreSQL" in result.stderr


def test_gunicorn_refuses_to_start_on_sqlite_with_the_reason(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "imagesearch.wsgi", "--config", "python:imagesearch.gunicorn_conf"]
        + ["--bind", "127.0.0.1:0"],
        cwd=ROOT,
        env=_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Refusing to start: IMAGESEARCH_VECTOR_BACKEND=pgvector needs PostgreSQL" in result.stderr


@pytest.mark.parametrize(
    ("available", "installed", "table", "says", "migrate_fixes"),
    [
        (None, None, False, "has no pgvector extension. Install pgvector 0.8.0 or newer", False),
        ("0.7.4", "0.7.4", True, "needs pgvector 0.8.0 or newer (halfvec and iterative index scans)", False),
        ("0.8.2", None, False, "not created in this database yet; `manage.py migrate` creates it", True),
        ("0.8.2", "0.8.2", False, "vector table is not created yet; `manage.py migrate` creates it", True),
    ],
)
def test_a_postgresql_without_a_recent_enough_extension_is_refused_with_what_to_install(
    monkeypatch, available, installed, table, says, migrate_fixes
):
    monkeypatch.setattr(database, "extension", lambda connection: database.Extension(available, installed))
    monkeypatch.setattr(database, "table_exists", lambda connection: table)
    found = database.unusable(_FakePostgres())
    assert says in found.reason
    assert found.migrate_fixes is migrate_fixes


def test_a_postgresql_with_pgvector_0_8_and_its_table_is_accepted(monkeypatch):
    monkeypatch.setattr(database, "extension", lambda connection: database.Extension("0.8.2", "0.8.2"))
    monkeypatch.setattr(database, "table_exists", lambda connection: True)
    monkeypatch.setattr(database, "hnsw_crash", lambda pg: None)
    assert database.unusable(_FakePostgres()) is None


def test_a_postgresql_whose_backend_dies_building_hnsw_is_refused_and_its_connection_dropped(monkeypatch):
    monkeypatch.setattr(database, "extension", lambda connection: database.Extension("0.8.6", "0.8.6"))
    monkeypatch.setattr(database, "table_exists", lambda connection: True)
    probed = []
    monkeypatch.setattr(
        database, "hnsw_crash", lambda pg: probed.append(pg) or "server closed the connection"
    )
    fake = _FakePostgres()
    found = database.unusable(fake)
    assert probed == ["the server's own connection"]
    assert found.reason.startswith("PostgreSQL's pgvector crashed building an HNSW index: this binary needs")
    assert "(its backend died: server closed the connection)" in found.reason
    assert (found.migrate_fixes, fake.closed) == (False, True)


def test_what_migrate_repairs_is_a_warning_so_that_migrate_can_run(monkeypatch, settings):
    settings.IMAGESEARCH_VECTOR_BACKEND = "pgvector"
    monkeypatch.setattr(database, "unusable", lambda connection: database.Unusable("run migrate", True))
    [message] = checks.vector_store_check()
    assert (message.id, message.level < 40) == ("search.W001", True)


def test_the_faiss_store_asks_nothing_of_the_database(monkeypatch, settings):
    settings.IMAGESEARCH_VECTOR_BACKEND = "faiss"
    monkeypatch.setattr(database, "unusable", lambda connection: pytest.fail("asked the database"))
    assert checks.vector_store_check() == []
