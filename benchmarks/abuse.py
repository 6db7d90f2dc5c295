"""``python -m benchmarks.abuse [--quick]``: what one client can cost a public instance (issue 21).

Starts what ``./run`` starts (gunicorn, 2 processes x 4 threads, and one Celery worker) with the
full-size random CLIP, seeds a small library through the API, then measures, all clients
anonymous and each from its own loopback address (127.0.0.2, 127.0.0.3, ...):

1. **flood**: a client's text-search p50 alone (one fresh query a second), then while another
   client keeps 16 connections busy with fresh text queries; goal: <= 2x, and no error for it;
2. **crafted images**: 8 clients send, for 20 s, small PNGs that decode to 8 megapixels of 16-bit
   grey (each one different, so none is answered from a cache); goal: the web processes' RSS
   <= 400 MiB above idle, no 5xx;
3. **big body**: an anonymous 64 MB POST to the search page; goal: a 4xx within a second, and
   nothing of it written to disk (the server's temporary directory stays empty);
4. **overhead**: the normal text-search p50 with the limits in place against a server without
   them (rate limits off, model slots unbounded), both started fresh for this, the same fresh
   queries alternating between the two (which goes first alternates too); goal: within 5 %.

Prints every figure with its goal and writes ``benchmarks/results/abuse.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import struct
import threading
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from tests.support.processes import Gunicorn, RedisServer, children, redis_server_installed

from . import env as bench_env
from .load import Server, _image, _model_dir, _multipart, _wait_caught_up
from .timing import percentile

DATA = bench_env.RESULTS_DIR / "abuse-data"
WORDS = ["red", "old", "quiet", "busy", "evening", "morning", "small", "wide", "green", "tall"]
NOUNS = ["sunset", "bicycle", "zebra", "harbour", "forest", "kitchen", "mountain", "street"]
LIMITS_OFF = {
    "IMAGESEARCH_RATE_LIMIT_TEXT": "off",
    "IMAGESEARCH_RATE_LIMIT_IMAGE": "off",
    "IMAGESEARCH_RATE_LIMIT_KNN": "off",
    "IMAGESEARCH_MODEL_SLOTS": "256",
}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


_fresh = iter(range(10**9))
_fresh_lock = threading.Lock()


def fresh_text() -> str:
    """Words nobody asked for yet: each needs the text model (no cache answers it)."""
    with _fresh_lock:
        n = next(_fresh)
    return f"{WORDS[n % 10]} {NOUNS[n // 10 % 8]} number {n}"


class Conn:
    """One keep-alive connection from a chosen loopback address."""

    def __init__(self, port: int, source: str) -> None:
        self.port, self.source = port, source
        self.conn = self._open()

    def _open(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=120, source_address=(self.source, 0)
        )

    def request(self, method: str, path: str, body: bytes | None = None, headers=None) -> int:
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                response.read()
                return response.status
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = self._open()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def search(self, text: str) -> tuple[float, int]:
        started = time.perf_counter()
        status = self.request("GET", "/?" + urlencode({"q": text}))
        return time.perf_counter() - started, status


@dataclass
class Paced:
    """A client asking one fresh query every ``interval`` seconds (under its rate limit)."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    def run(self, port: int, source: str, *, count: int, interval: float) -> Paced:
        conn = Conn(port, source)
        for _ in range(count):
            began = time.perf_counter()
            took, status = conn.search(fresh_text())
            self.statuses[status] += 1
            if status == 200:
                self.latencies.append(took)
            time.sleep(max(0.0, interval - (time.perf_counter() - began)))
        return self

    def p50_ms(self) -> float:
        return round(percentile(self.latencies, 50) * 1000, 1) if self.latencies else float("nan")


def flood(port: int, source: str, *, connections: int, stop: threading.Event) -> Counter:
    """``connections`` connections sending fresh text queries back to back until ``stop``."""
    statuses: Counter = Counter()
    lock = threading.Lock()

    def one() -> None:
        conn = Conn(port, source)
        while not stop.is_set():
            try:
                _, status = conn.search(fresh_text())
            except OSError:
                status = -1
            with lock:
                statuses[status] += 1

    threads = [threading.Thread(target=one, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(timeout=130)
    return statuses


# --- Crafted query images -------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def crafted_png_parts(side: int) -> tuple[bytes, bytes]:
    """A ``side`` x ``side`` 16-bit greyscale PNG of zeros, as (head, tail): a distinct tEXt
    chunk goes between, so that every request is a new picture for the server."""
    row = b"\0" + b"\0" * (2 * side)  # filter byte, then 16-bit samples
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0))
    return head, _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def crafted_images(port: int, pids: list[int], *, clients: int, seconds: float, side: int) -> dict:
    head, tail = crafted_png_parts(side)
    statuses: Counter = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    idle = rss_mib(pids)
    peak = idle

    def one(index: int) -> None:
        conn = Conn(port, f"127.0.0.{10 + index}")
        n = 0
        while not stop.is_set():
            n += 1
            png = head + _chunk(b"tEXt", f"Comment\0{index}-{n}-{uuid.uuid4().hex}".encode()) + tail
            body, content_type = _multipart({"k": "10"}, [("image", "grey16.png", png)])
            try:
                status = conn.request("POST", "/api/search", body, {"Content-Type": content_type})
            except OSError:
                status = -1
            with lock:
                statuses[status] += 1

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        peak = max(peak, rss_mib(pids))
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=130)
    peak = max(peak, rss_mib(pids))
    png_bytes = len(head + tail) + 60
    return {
        "png_bytes": png_bytes,
        "pixels": side * side,
        "rss_idle_mib": round(idle, 1),
        "rss_peak_mib": round(peak, 1),
        "rss_rise_mib": round(peak - idle, 1),
        "statuses": dict(statuses),
        "server_errors": sum(n for s, n in statuses.items() if s >= 500 or s < 0),
    }


# --- A big body -----------------------------------------------------------------------------


def big_post(port: int, tmp: Path, *, size: int) -> dict:
    """Declare ``size`` bytes to the search page and send them as fast as the server takes them;
    the answer's time and status, and what the server's temporary directory holds after."""
    boundary = uuid.uuid4().hex
    before = sorted(p.name for p in tmp.iterdir())
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.5", 0))
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    sock.sendall(head)
    sent, chunk = len(head), b"\0" * (1 << 20)
    sock.setblocking(False)
    answer = b""
    while time.perf_counter() - started < 10:
        try:
            answer += sock.recv(65536)
            if b"\r\n\r\n" in answer:
                break
        except BlockingIOError:
            pass
        except OSError:
            break
        if sent < size:
            try:
                sent += sock.send(chunk[: size - sent])
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass
    took = time.perf_counter() - started
    sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None
    time.sleep(0.5)
    after = sorted(p.name for p in tmp.iterdir())
    return {
        "declared_bytes": size,
        "sent_bytes_before_the_answer": sent,
        "status": status,
        "seconds": round(took, 3),
        "temporary_files_written": len(set(after) - set(before)),
    }


# --- With and without the limits ------------------------------------------------------------


def alternating(port_on: int, port_off: int, *, count: int, interval: float) -> dict:
    """The same fresh queries to both servers in turn (one client address each), so that both
    see the same machine at the same moments."""
    on, off = Paced(), Paced()
    # Four client addresses in turn: each stays under its own rate limit at this pace.
    sources = [f"127.0.0.{20 + n}" for n in range(4)]
    conns_on = [Conn(port_on, source) for source in sources]
    conns_off = [Conn(port_off, source) for source in sources]
    for i in range(count):
        began = time.perf_counter()
        text = fresh_text()
        conn_on, conn_off = conns_on[i % 4], conns_off[i % 4]
        pairs = [(conn_on, on), (conn_off, off)] if i % 2 == 0 else [(conn_off, off), (conn_on, on)]
        for conn, paced in pairs:
            took, status = conn.search(text)
            paced.statuses[status] += 1
            if status == 200:
                paced.latencies.append(took)
        time.sleep(max(0.0, interval - (time.perf_counter() - began)))
    return {
        "with_limits_p50_ms": on.p50_ms(),
        "without_limits_p50_ms": off.p50_ms(),
        "ratio": round(on.p50_ms() / off.p50_ms(), 3),
        "with_limits_statuses": dict(on.statuses),
        "without_limits_statuses": dict(off.statuses),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases (development)")
    parser.add_argument("--model", choices=["full", "tiny"], default="full")
    parser.add_argument("--only-flood", action="store_true", help="phase 1 alone (development)")
    parser.add_argument("--only-overhead", action="store_true", help="phase 4 alone (development)")
    args = parser.parse_args()
    queries = 15 if args.quick else 40
    image_seconds = 8.0 if args.quick else 20.0
    pair_queries = 40 if args.quick else 160

    model = _model_dir(args.model)
    if DATA.exists():
        shutil.rmtree(DATA)
    (DATA / "tmp").mkdir(parents=True)
    redis = RedisServer(DATA).start() if redis_server_installed() else None
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagesearch.settings",
        "DJANGO_SECRET_KEY": "abuse-test-only-" + uuid.uuid4().hex,
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "IMAGESEARCH_DATA_DIR": str(DATA),
        "DATABASE_URL": f"sqlite:///{DATA / 'db.sqlite3'}",
        "IMAGESEARCH_CLIP_MODEL": str(model),
        "IMAGESEARCH_LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": redis.url if redis else f"sqla+sqlite:///{DATA / 'broker.sqlite3'}",
        "CELERY_TASK_DEFAULT_QUEUE": "imagesearch-abuse",
        "TMPDIR": str(DATA / "tmp"),  # where Django would spool an upload's body
        "PYTHONPATH": str(bench_env.ROOT),
    }
    os.environ.update({k: v for k, v in environment.items() if k != "TMPDIR"})
    import benchmarks.load as load_module

    load_module.DATA = DATA
    server = Server(environment, web_workers=2, threads=4)
    extra_servers: list[Gunicorn] = []
    report: dict[str, object] = {"model": str(model), "quick": args.quick}
    try:
        server.manage("migrate", "--noinput")
        server.manage(
            "shell", "-c",
            "from django.contrib.auth.models import User; "
            "User.objects.create_user('bench', password=None, is_staff=True, is_superuser=True)",
        )  # fmt: skip
        token = server.manage("create_api_token", "bench", "--name", "abuse benchmark").strip()
        server.start(timeout=600)
        import django

        django.setup()
        staff = Conn(server.port, "127.0.0.1")
        seeded: set[int] = set()
        for start in range(0, 32, 16):
            files = [("files", f"seed-{i}.jpg", _image(i)) for i in range(start, start + 16)]
            body, content_type = _multipart({"labels": NOUNS[start // 16]}, files)
            headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
            staff.conn.request("POST", "/api/images", body=body, headers=headers)
            response = staff.conn.getresponse()
            seeded |= set(json.loads(response.read())["added"])
        state = _wait_caught_up(seeded, load_module.Deadline(20), server, bound=900)
        if state["lost"]:
            raise RuntimeError(f"the seed library was not indexed in time: {state}")
        for i in range(16):  # every web process and thread warm
            Conn(server.port, f"127.0.1.{i + 1}").search(f"warm up {i}")
        pids = children(server.web.proc.pid)
        _log(f"web processes {pids}; slots per process from {os.cpu_count()} cores")

        if not args.only_overhead:
            _log(f"1. flood: the victim alone, {queries} queries")
            alone = Paced().run(server.port, "127.0.0.2", count=queries, interval=1.0)
            _log("1. flood: the victim while 127.0.0.3 floods on 16 connections")
            stop = threading.Event()
            flooded: dict[str, Counter] = {}
            flooder = threading.Thread(
                target=lambda: flooded.setdefault(
                    "statuses", flood(server.port, "127.0.0.3", connections=16, stop=stop)
                ),
                daemon=True,
            )
            flooder.start()
            time.sleep(2.0)
            during = Paced().run(server.port, "127.0.0.2", count=queries, interval=1.0)
            stop.set()
            flooder.join(timeout=200)
            report["flood"] = {
                "alone_p50_ms": alone.p50_ms(),
                "flooded_p50_ms": during.p50_ms(),
                "ratio": round(during.p50_ms() / alone.p50_ms(), 2),
                "victim_statuses_alone": dict(alone.statuses),
                "victim_statuses_flooded": dict(during.statuses),
                "victim_errors": sum(n for s, n in during.statuses.items() if s != 200),
                "flooder_statuses": dict(flooded.get("statuses", {})),
            }
            _log(f"   {report['flood']}")

            if args.only_flood:
                print(json.dumps(report, indent=2))
                return 0
            time.sleep(5.0)
            _log(f"2. crafted images: 8 clients for {image_seconds:.0f} s")
            report["crafted_images"] = crafted_images(
                server.port, pids, clients=8, seconds=image_seconds, side=2828
            )
            _log(f"   {report['crafted_images']}")

            _log("3. a 64 MB anonymous POST to the search page")
            report["big_body"] = big_post(server.port, DATA / "tmp", size=64 * 1024 * 1024)
            _log(f"   {report['big_body']}")

        _log("4. overhead: two fresh servers, with and without the limits, queries alternating")
        server.web.stop()  # its state after the phases above is not what is measured here
        limited = Gunicorn(
            workers=2,
            threads=4,
            log_path=DATA / "logs" / "web-limited.log",
            env={**environment, "IMAGESEARCH_TORCH_THREADS": "1"},
        )
        unlimited = Gunicorn(
            workers=2,
            threads=4,
            log_path=DATA / "logs" / "web-unlimited.log",
            env={**environment, **LIMITS_OFF, "IMAGESEARCH_TORCH_THREADS": "1"},
        )
        extra_servers.extend([limited, unlimited])
        for web in (limited, unlimited):
            web.start()
        for web in (limited, unlimited):
            web.wait_answering("/", timeout=600)
            for i in range(16):
                Conn(web.port, f"127.0.2.{i + 1}").search(f"warm up {i}")
        report["overhead"] = alternating(limited.port, unlimited.port, count=pair_queries, interval=0.5)
        _log(f"   {report['overhead']}")
    finally:
        for web in extra_servers:
            web.stop()
        server.stop()
        if redis:
            redis.stop()

    goals = {}
    if "flood" in report:
        flood_ = report["flood"]
        goals["flood_ratio_at_most_2"] = flood_["ratio"] <= 2.0 and flood_["victim_errors"] == 0
        crafted = report["crafted_images"]
        goals["crafted_rss_rise_at_most_400_mib_no_5xx"] = (
            crafted["rss_rise_mib"] <= 400 and crafted["server_errors"] == 0
        )
        big = report["big_body"]
        goals["big_body_4xx_within_1_s_nothing_written"] = (
            (big["status"] or 0) // 100 == 4 and big["seconds"] <= 1.0 and big["temporary_files_written"] == 0
        )
    goals["limits_overhead_within_5_percent"] = report["overhead"]["ratio"] <= 1.05
    report["goals"] = goals
    print(json.dumps(report, indent=2))
    out = bench_env.RESULTS_DIR / "abuse.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
