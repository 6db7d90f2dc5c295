"""A private ``redis-server`` on a free loopback port, for tests that stop, hang or restart the
broker (the shared Redis at 6379 is never touched), and a way to point this process's Celery
app at it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_installed() -> bool:
    return shutil.which("redis-server") is not None


class RedisServer:
    """``redis-server`` without persistence: a restart comes back empty, like a crashed broker
    whose queue was lost (the database, not the broker, is the source of truth)."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = directory / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServer:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.log_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C of the test run does not reach it; stop() does
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_path.read_text()[-2000:]}")
            if self.ping():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.settimeout(0.5)
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def flush(self) -> None:
        """Drop every queued message (tasks published while setting a test up)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(16).startswith(b"+OK")

    def stop(self) -> None:
        """Kill it abruptly (a crash, not a clean shutdown); a paused server is killed too."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        """Freeze it: connections are accepted by the kernel but never answered (a hung broker)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app at ``url`` for the block (the app read its broker from the
    settings once, at first use), with the Redis transport options of the settings."""
    from django.conf import settings

    from imagesearch.celery import app

    def drop_pools() -> None:
        # Connections to the previous broker are cached in the app's pools and in kombu's
        # process-wide registry of producer pools, keyed by connection: a closed pool left in
        # that registry is handed out again later ("Acquire on closed pool"), so clear it too.
        from kombu import pools

        for pool in (app._pool, app.amqp._producer_pool):
            if pool is not None:
                with contextlib.suppress(Exception):
                    pool.force_close_all()
        pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    # Celery prefers the CELERY_BROKER_URL environment variable to its configuration.
    saved = (os.environ.get("CELERY_BROKER_URL"), app.conf.broker_url, app.conf.broker_transport_options)
    drop_pools()
    os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = url
    app.conf.broker_transport_options = dict(settings.REDIS_BROKER_TRANSPORT_OPTIONS)
    try:
        yield
    finally:
        drop_pools()
        env_url, app.conf.broker_url, app.conf.broker_transport_options = saved
        if env_url is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = env_url
