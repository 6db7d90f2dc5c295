"""Shared fixtures: a tiny CLIP model built once per run, temporary media and index
directories per test, and a real Celery worker process for the integration tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.support import env
from tests.support.clip_model import build_clip_model
from tests.support.redis_server import RedisServer, celery_broker, redis_server_installed

ROOT = Path(__file__).resolve().parent.parent


def require_service(available: bool, what: str) -> None:
    """Skip on a laptop without the service; fail under CI, which must never go green by skipping."""
    if available:
        return
    if env.IN_CI:
        pytest.fail(f"{what} is not reachable, and CI=true: CI must run every test.")
    pytest.skip(f"{what} is not reachable on this machine (start it to run this test).")


@pytest.fixture(scope="session")
def clip_model_dir() -> Path:
    """A tiny CLIP (random seeded weights, real architecture), built once per test run."""
    return build_clip_model(Path(django_settings.DATA_DIR) / "models" / "tiny-clip", size="tiny", seed=0)


@pytest.fixture(autouse=True)
def _isolated_storage(request, settings, tmp_path, clip_model_dir) -> Iterator[None]:
    """Each test gets its own media and index directories, and the tiny model."""
    from search import index as search_index

    settings.IMAGESEARCH_CLIP_MODEL = str(clip_model_dir)
    # Users made by tests need no slow password hash (Django's default costs ~0.3 s per user).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if request.node.get_closest_marker("worker") is None:
        settings.MEDIA_ROOT = str(tmp_path / "media")
        settings.INDEX_DIR = tmp_path / "index"
    search_index.reset_readers()
    yield
    search_index.reset_readers()


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="staff", password="pw-staff-123", is_staff=True, is_superuser=True
    )


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


# --- A real Celery worker -----------------------------------------------------------------------


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or ""
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


class WorkerProcess:
    """A ``celery worker`` in its own process group, logging to a file."""

    def __init__(self, env_vars: dict[str, str], log_path: Path, extra_args: list[str]):
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "imagesearch",
                "worker",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                *extra_args,
            ],
            cwd=ROOT,
            env=env_vars,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-3000:]}")
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def start_worker(clip_model_dir, tmp_path_factory) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes against this run's test database and broker; all are
    stopped when the test ends."""
    started: list[WorkerProcess] = []

    def start(*extra_args: str, env_overrides: dict[str, str] | None = None) -> WorkerProcess:
        env_vars = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "IMAGESEARCH_CLIP_MODEL": str(clip_model_dir),
            "IMAGESEARCH_DATA_DIR": str(django_settings.DATA_DIR),
            "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
            "IMAGESEARCH_TORCH_THREADS": "1",
            **(env_overrides or {}),
        }
        log = tmp_path_factory.mktemp("worker") / "worker.log"
        args = list(extra_args) or ["--pool", "solo"]
        worker = WorkerProcess(env_vars, log, ["-Q", django_settings.CELERY_TASK_DEFAULT_QUEUE, *args])
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def worker(start_worker, transactional_db) -> WorkerProcess:
    """One real worker (solo pool) for a test whose rows are committed (transactional)."""
    return start_worker()


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


def wait_for(
    predicate: Callable[[], object], *, timeout: float = 60, interval: float = 0.1, what: str = ""
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


@pytest.fixture(scope="session", autouse=True)
def _purge_test_queue() -> Iterator[None]:
    yield
    if django_settings.CELERY_BROKER_URL.startswith("redis://"):
        try:
            import redis

            client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL, socket_timeout=2)
            client.delete(django_settings.CELERY_TASK_DEFAULT_QUEUE)
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass
    shutil.rmtree(Path(django_settings.DATA_DIR) / "cache", ignore_errors=True)
