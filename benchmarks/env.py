"""Where a benchmark run lives, and the environment its processes share.

A run has a data directory of its own (``benchmarks/results/data``: SQLite database, media,
index generations, cache) and the full-size random CLIP (``benchmarks/.models``), so it never
touches ``./data`` or the tests' databases. :func:`configure` sets the environment of this
process *before* Django is imported and returns the same variables for the subprocesses it
starts (the Celery worker, gunicorn).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
MODELS_DIR = BENCH_DIR / ".models"
MODEL_DIR = MODELS_DIR / "clip-vit-b-32-random"
DATA_DIR = RESULTS_DIR / "data"
REDIS_URL = os.environ.get("IMAGESEARCH_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

_env: dict[str, str] = {}


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def build_model() -> Path:
    """The full-size CLIP ViT-B/32 with random weights, built once and cached."""
    from tests.support.clip_model import build_clip_model

    return build_clip_model(MODEL_DIR, size="full", seed=0)


def configure(*, fresh: bool = True) -> dict[str, str]:
    """Point this process (and the returned environment) at the benchmark data directory.

    ``fresh``: delete the data directory of an earlier run first. Redis is the broker when it
    is reachable (a queue of this run's own, deleted at the end), else the embedded broker.
    """
    if fresh and DATA_DIR.exists():
        shutil.rmtree(DATA_DIR)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    queue = f"imagesearch-bench-{uuid.uuid4().hex[:10]}"
    env = {
        "DJANGO_SETTINGS_MODULE": "imagesearch.settings",
        "DJANGO_SECRET_KEY": "benchmark-only-secret-key-" + "x" * 40,
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1,testserver",
        "IMAGESEARCH_DATA_DIR": str(DATA_DIR),
        "DATABASE_URL": os.environ.get(
            "IMAGESEARCH_BENCH_DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
        ),
        "IMAGESEARCH_CLIP_MODEL": str(MODEL_DIR),
        "IMAGESEARCH_LOG_LEVEL": "WARNING",
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
        # What the product sets before it loads torch or faiss (search.encoder, search.stores.faiss).
        # This process imports them itself, for the baselines, so it sets it first.
        "OMP_WAIT_POLICY": "PASSIVE",
        # The figures are one client's (or a load generator's) on loopback: per-client rate limits
        # would turn them into 429s.
        **{
            f"IMAGESEARCH_RATE_LIMIT_{kind}": "off"
            for kind in ("TEXT", "IMAGE", "KNN", "STAFF_TEXT", "STAFF_IMAGE", "STAFF_KNN")
        },
    }
    if _port_open("127.0.0.1", 6379) and "IMAGESEARCH_BENCH_EMBEDDED_BROKER" not in os.environ:
        env["CELERY_BROKER_URL"] = REDIS_URL
    else:
        env["CELERY_BROKER_URL"] = f"sqla+sqlite:///{DATA_DIR / 'celery-broker.sqlite3'}"
    os.environ.update(env)
    _env.clear()
    _env.update(env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return dict(env)


def subprocess_env(**overrides: str) -> dict[str, str]:
    """The environment for a worker or web process of this run."""
    return {**os.environ, **_env, **overrides}


def python_last_line(args: list[str], *, what: str, timeout: float = 600, **env_overrides: str) -> str:
    """Run ``python ARGS`` in this run's environment and return the last line it printed;
    a failure raises with the end of its stderr."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=subprocess_env(**env_overrides),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def setup_django() -> None:
    import django

    django.setup()


def purge_queue() -> None:
    """Delete this run's queue from Redis (never anything else: the server is shared)."""
    url = _env.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis://"):
        return
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2)
        client.delete(_env["CELERY_TASK_DEFAULT_QUEUE"])
    except Exception:  # noqa: BLE001 - best effort
        pass
