"""Loaded with ``-p tests.support.env`` before Django: points the test run at its own data
directory, a test secret key, and the real Redis when there is one.

Imported before pytest-django configures Django, so the settings module sees these values.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid

REDIS_URL = os.environ.get("IMAGESEARCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_available() -> bool:
    return port_open("127.0.0.1", 6379)


os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key-" + "x" * 40)
os.environ["IMAGESEARCH_DATA_DIR"] = os.environ.get("IMAGESEARCH_TEST_DATA_DIR") or tempfile.mkdtemp(
    prefix="imagesearch-tests-"
)
# A queue of this run's own, so parallel runs on one Redis never take each other's tasks.
os.environ["CELERY_TASK_DEFAULT_QUEUE"] = f"imagesearch-test-{uuid.uuid4().hex[:12]}"
if "CELERY_BROKER_URL" not in os.environ and redis_available():
    os.environ["CELERY_BROKER_URL"] = REDIS_URL
