"""Shared fixtures: a tiny CLIP model built once per run, temporary media and index
directories per test, an empty queue for every test, real Celery worker processes for the
integration tests, and a small indexed library."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings

from search import encoder
from tests.factories import indexed_library
from tests.support import env
from tests.support.broker import celery_broker, queue_purge
from tests.support.clip_model import build_clip_model, embedding_dim
from tests.support.processes import CeleryWorker, RedisServer, redis_server_installed


def require_service(available: bool, what: str) -> None:
    """Skip on a laptop without the service; fail under CI, which must never go green by skipping."""
    if available:
        return
    if env.IN_CI:
        pytest.fail(f"{what} is not reachable, and CI=true: CI must run every test.")
    pytest.skip(f"{what} is not reachable on this machine (start it to run this test).")


def _exported(path: Path, setting: str) -> Path:
    """``path``, exported to ONNX the way the application exports a model at its first load
    (search.encoder.cache, in a child process): once, cached beside the model, so that no test
    pays for it and the ONNX runtime serves the tests as it serves the product."""
    from search.encoder import cache

    cache.export_in_subprocess(str(path), Path(django_settings.DATA_DIR) / "onnx-runtime", setting=setting)
    return path


@pytest.fixture(scope="session")
def clip_model_dir() -> Path:
    """A tiny CLIP (random seeded weights, real architecture), built and exported once per test run."""
    path = build_clip_model(Path(django_settings.DATA_DIR) / "models" / "tiny-clip", size="tiny", seed=0)
    return _exported(path, "IMAGESEARCH_CLIP_MODEL")


@pytest.fixture(scope="session")
def text_model_dir() -> Path:
    """A tiny multilingual text encoder into the tiny CLIP's space (random seeded weights, the
    published model's architecture), built and exported once per test run."""
    from tests.support.text_model import build_text_model

    path = build_text_model(
        Path(django_settings.DATA_DIR) / "models" / "tiny-text", dim=embedding_dim("tiny"), seed=0
    )
    return _exported(path, "IMAGESEARCH_TEXT_MODEL")


# --- The two vector stores ----------------------------------------------------------------------


def _database_is_postgresql() -> bool:
    return django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def pytest_generate_tests(metafunc) -> None:
    """A test that uses ``vector_store`` (directly or with ``usefixtures``) runs once per store:
    FAISS always, pgvector where the test database is PostgreSQL (./test's PostgreSQL pass; there,
    a PostgreSQL without pgvector fails under CI=true, see :func:`vector_store`)."""
    if "vector_store" in metafunc.fixturenames:
        stores = ["faiss", "pgvector"] if _database_is_postgresql() else ["faiss"]
        metafunc.parametrize("vector_store", stores, indirect=True)


# Fixtures through which a test reaches the test database (pytest-django blocks any other way).
_DATABASE_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_setup",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
    }
)


def _uses_test_database(item) -> bool:
    return item.get_closest_marker("django_db") is not None or bool(
        _DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
    )


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``pgvector`` are about that store alone, and tests marked ``postgresql`` about
    PostgreSQL's own behaviour (row locks two transactions contend for): deselected (not skipped) on SQLite,
    run in the PostgreSQL pass, where the store must be usable under CI=true. The PostgreSQL pass
    runs only the tests that use the test database: one that asks for no database fixture or mark
    cannot reach it (pytest-django refuses the connection; a process it starts gets no rows), so
    a second pass would repeat it unchanged. Tests marked ``own_database`` run a copy of the
    project with a database of its own, and likewise run in the SQLite pass only."""
    postgresql = _database_is_postgresql()
    markers = ("own_database",) if postgresql else ("pgvector", "postgresql")
    kept = [
        item
        for item in items
        if not any(item.get_closest_marker(marker) for marker in markers)
        and (not postgresql or item.get_closest_marker("pgvector") is not None or _uses_test_database(item))
    ]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture
def pgvector_store(settings, django_db_blocker) -> None:
    """pgvector as the store, for tests marked ``pgvector``."""
    from django.db import connection

    from search.stores.pgvector import database, store

    with django_db_blocker.unblock():
        found = database.unusable(connection)
    require_service(found is None, f"PostgreSQL with pgvector ({found.reason if found else ''})")
    settings.IMAGESEARCH_VECTOR_BACKEND = "pgvector"
    store.reset()


@pytest.fixture
def vector_store(request, settings, django_db_blocker) -> str:
    """The vector store this test runs against (``IMAGESEARCH_VECTOR_BACKEND``)."""
    from django.db import connection

    from search.stores.pgvector import database, store

    name = request.param
    if name == "pgvector":
        with django_db_blocker.unblock():
            found = database.unusable(connection)
        require_service(found is None, f"PostgreSQL with pgvector ({found.reason if found else ''})")
    settings.IMAGESEARCH_VECTOR_BACKEND = name
    store.reset()  # HNSW indexes made in a rolled-back test are gone
    return name


@pytest.fixture(autouse=True)
def _isolated_storage(request, settings, tmp_path, clip_model_dir) -> Iterator[None]:
    """Each test gets its own media and index directories, and the tiny model (and its vector
    store before any other fixture stores an image)."""
    from search.stores import faiss as search_index

    if "vector_store" in request.fixturenames:
        request.getfixturevalue("vector_store")
    settings.IMAGESEARCH_CLIP_MODEL = str(clip_model_dir)
    settings.IMAGESEARCH_TEXT_MODEL = ""  # the CLIP's own text tower, whatever the environment says
    # Users made by tests need no slow password hash (Django's default costs ~0.3 s per user).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if request.node.get_closest_marker("worker") is None:
        settings.MEDIA_ROOT = str(tmp_path / "media")
        settings.INDEX_DIR = tmp_path / "index"
    search_index.reset_readers()
    yield
    search_index.reset_readers()


@pytest.fixture(autouse=True)
def _empty_queue(request) -> Iterator[None]:
    """Each test starts from an empty queue of this run's, and one whose database changes are
    never committed (a plain ``db`` test) must leave it empty: every send waits for the commit
    (search.dispatch), so a message left behind is a send that did not wait."""
    url, queue = django_settings.CELERY_BROKER_URL, django_settings.CELERY_TASK_DEFAULT_QUEUE
    queue_purge(url, queue)
    yield
    left = queue_purge(url, queue)
    marker = request.node.get_closest_marker("django_db")
    committed = bool(marker and marker.kwargs.get("transaction")) or bool(
        {"transactional_db", "live_server", "redis_worker"} & set(request.fixturenames)
    )
    if left and not committed:
        pytest.fail(
            f"this test left {left} message(s) in the run's queue although it commits nothing: "
            "something sent before the commit (capture sends with the `sent` fixture)",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _label_counts_afresh(monkeypatch) -> Iterator[None]:
    """Label counts are never reused from another test: the reuse is process-wide, and whether a
    count is "slow" (search.query.label_counts) would otherwise depend on the machine's load. The
    test of the reuse sets the threshold itself."""
    from search.query import label_counts

    monkeypatch.setattr(label_counts, "POPULAR_LABELS_SLOW_SECONDS", float("inf"))
    label_counts.reset()
    yield
    label_counts.reset()


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, dict]]:
    """What search.dispatch hands to the broker, captured at its edge (``_send``) instead of
    sent: (task name, options) in order."""
    from search import dispatch

    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(dispatch, "_send", lambda name, **options: calls.append((name, options)))
    return calls


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="staff", password="pw-staff-123", is_staff=True, is_superuser=True
    )


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


# --- Real worker processes -------------------------------------------------------------------


def web_server_env(clip_model_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a gunicorn started by a test: this run's database, data directory
    and tiny model."""
    return {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "IMAGESEARCH_CLIP_MODEL": str(clip_model_dir),
        "IMAGESEARCH_DATA_DIR": str(django_settings.DATA_DIR),
        "IMAGESEARCH_TORCH_THREADS": "1",
        "DJANGO_SECRET_KEY": "test-only-" + "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        **extra,
    }


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or ""
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = s.get("HOST") or "127.0.0.1"
    if host.startswith("/"):  # a Unix socket directory (the test run's own pgserver)
        return f"postgres://{auth}{quote(host, safe='')}/{s['NAME']}"
    return f"postgres://{auth}{host}:{s.get('PORT') or 5432}/{s['NAME']}"


@pytest.fixture
def start_worker(clip_model_dir, tmp_path_factory) -> Iterator[Callable[..., CeleryWorker]]:
    """Start real worker processes against this run's test database and broker (``broker``: a
    test's private redis-server instead); all are stopped when the test ends."""
    started: list[CeleryWorker] = []

    def start(
        *extra_args: str,
        broker: str | None = None,
        env_overrides: dict[str, str] | None = None,
        constants: dict[str, float] | None = None,
    ) -> CeleryWorker:
        env_vars = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "IMAGESEARCH_CLIP_MODEL": str(clip_model_dir),
            "IMAGESEARCH_TEXT_MODEL": "",
            "IMAGESEARCH_DATA_DIR": str(django_settings.DATA_DIR),
            "CELERY_BROKER_URL": broker or django_settings.CELERY_BROKER_URL,
            "IMAGESEARCH_TORCH_THREADS": "1",
            "PYTHONUNBUFFERED": "1",  # tests read the log while the worker runs
            **(env_overrides or {}),
        }
        log = tmp_path_factory.mktemp("worker") / "worker.log"
        args = list(extra_args) or ["--pool", "solo"]
        worker = CeleryWorker(
            *("--without-mingle", "--without-gossip", "--without-heartbeat"),
            *("-Q", django_settings.CELERY_TASK_DEFAULT_QUEUE, *args),
            log_path=log,
            env=env_vars,
            constants=constants,
        )
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def redis_worker(start_worker, transactional_db) -> CeleryWorker:
    """One real worker (solo pool) on the shared Redis, for a test whose rows are committed."""
    from tests.support.workers import clear_shared_index, wait_for_start_up_sweep

    require_service(env.redis_available(), "Redis at 127.0.0.1:6379")
    assert django_settings.CELERY_BROKER_URL.startswith("redis://")
    clear_shared_index()  # the queue is empty already (_empty_queue)
    # Only once its start-up sweep is done is the worker idle: a sweep still to run when the
    # test uploads would hand the test's images over a second time and schedule rebuilds.
    return wait_for_start_up_sweep(start_worker())


@pytest.fixture
def private_redis(tmp_path_factory) -> Iterator[RedisServer]:
    """A redis-server of this test's own on a free port (tests that stop or hang the broker),
    with this process's Celery app pointed at it; killed when the test ends."""
    require_service(redis_server_installed(), "the redis-server program")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        with celery_broker(server.url):
            yield server
    finally:
        server.stop()


# --- A small indexed library -------------------------------------------------------------------


@pytest.fixture
def library() -> dict[str, list[int]]:
    """Two sunsets, a bicycle and two zebras, embedded and indexed by this process (a test
    module that needs another library overrides this fixture with its own specs)."""
    return indexed_library(
        [(1, ["sunset"]), (2, ["sunset"]), (3, ["bicycle"]), (4, ["zebra"]), (5, ["zebra"])]
    )


@pytest.fixture
def clip_model_missing(settings, tmp_path) -> Iterator[None]:
    """The configured model directory does not exist (a broken install). Request it after
    ``library``, which needs the model to embed."""
    settings.IMAGESEARCH_CLIP_MODEL = str(tmp_path / "no-such-model")
    encoder.reset()
    yield
    encoder.reset()


@pytest.fixture(scope="session", autouse=True)
def _remove_query_cache() -> Iterator[None]:
    yield
    for name in ("cache", "cache-query_vectors", "cache-ratelimit"):
        shutil.rmtree(Path(django_settings.DATA_DIR) / name, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_rate_limits(settings) -> None:
    """Tests search as often as they need: the per-client rate limits (search.query.throttle) count only
    in the tests that ask for them with the ``rate_limits`` fixture."""
    settings.RATELIMIT_ENABLE = False


@pytest.fixture
def rate_limits(settings) -> None:
    """The per-client rate limits on, with fresh counters."""
    from django.core.cache import caches

    from search.query import throttle

    settings.RATELIMIT_ENABLE = True
    caches["ratelimit"].clear()
    throttle.forget_refusals()
