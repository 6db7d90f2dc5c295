"""The processes that ``./run`` starts (a Celery worker, gunicorn) and a private redis-server,
started and stopped the same way by the tests and the benchmarks.

Each runs in a process group of its own, so a Ctrl-C of the test run does not reach it and
:meth:`Process.stop` ends it together with its children; its output goes to a log file.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Self

from tests.support.constants import ROOT
from tests.support.waiting import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (a prefork worker's pool, gunicorn's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def redis_server_installed() -> bool:
    return shutil.which("redis-server") is not None


class Process:
    """One program, started by :meth:`start` (again after :meth:`stop` if need be)."""

    def __init__(self, argv: list[str], *, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return Path(self.argv[0]).name if self.argv[0] != sys.executable else self.argv[2]

    def start(self) -> Self:
        assert not self.running(), "already running"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_while_running(
        self, predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str
    ) -> None:
        """Until ``predicate`` holds; a RuntimeError with the end of the log if the process exits
        first or the time runs out."""

        def done() -> bool:
            if not self.running():
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            return predicate()

        try:
            wait_for(done, timeout=timeout, interval=interval, what=what)
        except AssertionError as exc:
            raise RuntimeError(f"{exc}:\n{self.log_tail()}") from None

    def wait_until_logged(self, text: str, *, timeout: float) -> None:
        self.wait_while_running(
            lambda: text in self.log_path.read_text(errors="replace"),
            timeout=timeout,
            what=f"{text!r} in the log of {self.name}",
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Send ``sig`` to the whole group; SIGKILL if it is still there after ``timeout`` s."""
        if self.running():
            assert self.proc is not None
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


class CeleryWorker(Process):
    """``celery -A imagesearch worker`` with these extra arguments; :meth:`start` returns once it
    takes tasks. ``constants``: the product's named constants to change in the worker first
    (``{"module:NAME": value}``, see tests.support.worker)."""

    def __init__(
        self,
        *args: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        ready_timeout: float = 120,
        constants: dict[str, float] | None = None,
    ) -> None:
        command = ["-m", "tests.support.worker", json.dumps(constants)] if constants else ["-m", "celery"]
        argv = [sys.executable, *command, "-A", "imagesearch", "worker", "--loglevel", "INFO", *args]
        super().__init__(argv, log_path=log_path, env=env)
        self.ready_timeout = ready_timeout

    def start(self) -> Self:
        super().start()
        try:
            self.wait_until_logged(" ready.", timeout=self.ready_timeout)
        except RuntimeError:
            self.stop()
            raise
        return self


class Gunicorn(Process):
    """``gunicorn imagesearch.wsgi`` with ``./run``'s configuration (gthread workers) on a free
    loopback port."""

    def __init__(
        self, *, workers: int, threads: int, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.workers = workers
        argv = [sys.executable, "-m", "gunicorn", "imagesearch.wsgi"]
        argv += ["--config", "python:imagesearch.gunicorn_conf", "--bind", f"127.0.0.1:{self.port}"]
        argv += ["--workers", str(workers), "--threads", str(threads), "--timeout", "120"]
        super().__init__(argv, log_path=log_path, env=env)

    def answers(self, path: str = "/") -> bool:
        """Whether ``GET path`` answers 200 now."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def wait_answering(self, path: str = "/", *, timeout: float = 300) -> None:
        what = f"gunicorn answering {path}"
        self.wait_while_running(lambda: self.answers(path), timeout=timeout, interval=0.5, what=what)

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        return children(self.proc.pid)


class RedisServer(Process):
    """``redis-server`` without persistence on a free loopback port: a restart comes back empty,
    like a crashed broker whose queue was lost (the database, not the broker, is the source of
    truth). The shared Redis at 6379 is never touched."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(directory)]
        super().__init__(argv, log_path=directory / f"redis-{self.port}.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> Self:
        super().start()
        what = f"redis-server answering on port {self.port}"
        self.wait_while_running(self.ping, timeout=timeout, interval=0.05, what=what)
        return self

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

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 10) -> None:
        """Kill it abruptly (a crash, not a clean shutdown); a paused server is killed too."""
        super().stop(sig, timeout)

    def pause(self) -> None:
        """Freeze it: the kernel accepts connections but nothing answers them (a hung broker)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
