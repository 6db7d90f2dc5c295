"""The production web server (gunicorn, as ``./run`` starts it) and a small load generator.

Used for target 5 (requests per second at concurrency 16), and for target 4's figures that
need several web processes: memory of N processes sharing one memory-mapped index, and the
switch to a new index generation while requests are being answered.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.support import processes

from . import env


class Gunicorn(processes.Gunicorn):
    """gunicorn as ``./run`` starts it (the model warmed in each worker, one torch thread per web
    process), with this run's environment."""

    def __init__(self, *, workers: int, threads: int, log: Path, **extra_env: str) -> None:
        extra = {"IMAGESEARCH_TORCH_THREADS": "1", "IMAGESEARCH_LOG_LEVEL": "INFO", **extra_env}
        super().__init__(workers=workers, threads=threads, log_path=log, env=env.subprocess_env(**extra))

    def wait_ready(self, *, warm_requests: int, timeout: float = 300) -> None:
        """Until every worker has answered search requests (model and index loaded)."""
        self.wait_answering("/?" + urlencode({"q": "warm up"}), timeout=timeout)
        # Concurrent requests reach every worker; each loads the model and maps the index.
        load(self.port, concurrency=2 * self.workers, requests=warm_requests, texts=lambda i: f"warm {i}")


def get(port: int, path: str, params: dict[str, str], conn: http.client.HTTPConnection | None = None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", f"{path}?{urlencode(params)}")
        response = conn.getresponse()
        body = response.read()
        return response.status, body
    finally:
        if own:
            conn.close()


@dataclass
class LoadResult:
    started: float = 0.0
    finished: float = 0.0
    # (start, end, status) of every request, perf_counter seconds
    samples: list[tuple[float, float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(1 for _, _, status in self.samples if status == 200)


def load(
    port: int,
    *,
    concurrency: int,
    texts: Callable[[int], str],
    requests: int | None = None,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    result: LoadResult | None = None,
) -> LoadResult:
    """``concurrency`` clients, each on a keep-alive connection, sending ``GET /?q=<texts(i)>``
    back to back, until ``requests`` were sent, ``seconds`` passed or ``stop`` is set. Samples
    go into ``result`` (a new one unless given: pass one to watch it fill)."""
    result = result if result is not None else LoadResult()
    counter = iter(range(10**12))
    lock = threading.Lock()
    deadline = None

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = next(counter)
            if requests is not None and i >= requests:
                break
            if deadline is not None and time.perf_counter() >= deadline:
                break
            if stop is not None and stop.is_set():
                break
            t = time.perf_counter()
            try:
                status, body = get(port, "/", {"q": texts(i)}, conn)
                if status == 200 and b"<html" not in body[:2000].lower():
                    status = -2
            except (OSError, http.client.HTTPException) as exc:
                status = -1
                with lock:
                    result.errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                result.samples.append((t, time.perf_counter(), status))
        conn.close()

    result.started = time.perf_counter()
    if seconds is not None:
        deadline = result.started + seconds
    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.finished = time.perf_counter()
    return result


_SMAPS_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def memory_of(pid: int, index_file_pattern: str = "gen-") -> dict[str, float]:
    """MiB: the process's Rss / Pss / private memory, and the Rss / Pss of its mappings of index
    generation files (a shared mapping's Pss is its Rss divided among the processes mapping it)."""
    totals = {"rss": 0, "pss": 0, "private": 0, "index_rss": 0, "index_pss": 0}
    in_index = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if _SMAPS_HEADER.match(line):
                in_index = index_file_pattern in line and ".faiss" in line
                continue
            key, _, rest = line.partition(":")
            if key not in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                continue
            kb = int(rest.split()[0])
            if key == "Rss":
                totals["rss"] += kb
                if in_index:
                    totals["index_rss"] += kb
            elif key == "Pss":
                totals["pss"] += kb
                if in_index:
                    totals["index_pss"] += kb
            else:
                totals["private"] += kb
    return {name: round(kb / 1024, 1) for name, kb in totals.items()}


def summarise(result: LoadResult) -> dict[str, Any]:
    from .timing import summary_ms

    seconds = result.finished - result.started
    statuses: dict[str, int] = {}
    for _, _, status in result.samples:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "seconds": round(seconds, 2),
        "requests": len(result.samples),
        "ok": result.ok,
        "errors": len(result.samples) - result.ok,
        "statuses": statuses,
        "requests_per_s": round(result.ok / seconds, 2) if seconds else 0.0,
        "latency": summary_ms([end - start for start, end, _ in result.samples]),
        "error_examples": result.errors[:3],
    }
