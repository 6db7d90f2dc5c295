"""``python -m benchmarks.load``: a bounded load test of the whole application on loopback.

Starts what ``./run`` starts (gunicorn with ./run's settings, and one Celery worker with beat)
against a data directory and a redis-server of its own, seeds a small library through the API,
then sends text searches (the search page), image searches (``POST /api/search``) and uploads
(``POST /api/images``, one new image each) from ``--concurrency`` clients for ``--seconds``
while the worker embeds. Then it waits (bounded) for the worker to catch up and checks that no
upload was lost: every image the API accepted ends ``ready``, in the current index generation,
and found first by an image search with its own file.

Prints requests per second, latency percentiles per kind, errors, and the upload check; writes
``benchmarks/results/load.json``; exits non-zero on any error or lost upload. Everything stops
by itself: the load after ``--seconds``, each wait after a bound, the whole run after
``--max-minutes``.

    python -m benchmarks.load                      # 60 s at concurrency 32, full-size CLIP
    python -m benchmarks.load --model tiny --seconds 20
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from tests.support.processes import CeleryWorker, Gunicorn, RedisServer, redis_server_installed

from . import env as bench_env
from .timing import Noise, summary_ms

ROOT = bench_env.ROOT
DATA = bench_env.RESULTS_DIR / "load-data"
LABELS = ["sunset", "bicycle", "zebra", "harbour", "forest", "kitchen", "mountain", "street"]
WORDS = ["red", "old", "quiet", "busy", "evening", "morning", "small", "wide", "a photo of"]
MIX = {"text": 0.60, "image": 0.25, "upload": 0.15}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Deadline:
    def __init__(self, minutes: float) -> None:
        self.end = time.monotonic() + minutes * 60

    def left(self) -> float:
        return self.end - time.monotonic()


def _model_dir(kind: str) -> Path:
    from tests.support.clip_model import build_clip_model

    if kind == "tiny":
        return build_clip_model(bench_env.MODELS_DIR / "clip-tiny", size="tiny", seed=0)
    local = ROOT / "data" / "models" / "clip-random"
    if (local / "clip_model_build.json").exists():
        return local
    return bench_env.build_model()


def _image(seed: int, size: tuple[int, int] = (256, 192)) -> bytes:
    from tests.support.images import image_bytes

    return image_bytes(seed, "JPEG", size=size, quality=85)


def _multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, filename, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Server:
    """The processes of one run, as ``./run`` starts them: one worker process with beat, web
    processes with one torch thread each."""

    def __init__(self, environment: dict[str, str], *, web_workers: int, threads: int) -> None:
        self.env = environment
        self.logs = DATA / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        worker_args = ["--beat", "--concurrency", "1", "-s", str(DATA / "celerybeat-schedule")]
        self.worker = CeleryWorker(*worker_args, log_path=self.logs / "worker.log", env=environment)
        self.web = Gunicorn(
            workers=web_workers,
            threads=threads,
            log_path=self.logs / "web.log",
            env={**environment, "IMAGESEARCH_TORCH_THREADS": "1"},
        )
        self.port = self.web.port

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self, timeout: float) -> None:
        """Start both; return once the web server answers."""
        self.worker.start()
        self.web.start()
        self.web.wait_answering("/", timeout=timeout)

    def alive(self) -> bool:
        return self.worker.running() and self.web.running()

    def stop(self) -> None:
        self.web.stop()
        self.worker.stop()


@dataclass
class Sample:
    kind: str
    start: float
    end: float
    status: int
    error: str = ""


@dataclass
class Load:
    samples: list[Sample] = field(default_factory=list)
    uploaded: dict[int, tuple[int, str]] = field(default_factory=dict)  # image id -> (seed, label)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Client:
    """One keep-alive connection and the three kinds of request."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None, headers=None) -> tuple[int, bytes]:
        """One request; once more on a fresh connection if the server had closed the idle one
        (gunicorn's keep-alive timeout), which is not an error of the application."""
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt == 2:
                    raise
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                raise
        raise AssertionError("unreachable")

    def text_search(self, rng: random.Random) -> tuple[int, bytes]:
        words = f"{rng.choice(WORDS)} {rng.choice(LABELS)}"
        return self.request("GET", "/?" + urlencode({"q": words}))

    def image_search(self, seed: int) -> tuple[int, bytes]:
        body, content_type = _multipart({"k": "10"}, [("image", "query.jpg", _image(seed, (96, 72)))])
        return self.request("POST", "/api/search", body, {"Content-Type": content_type})

    def own_hybrid_search(self, seed: int, label: str) -> tuple[int, bytes]:
        """An uploaded image's own file and label, weighted as its stored hybrid: it comes first
        exactly when the index holds that image."""
        fields = {"text": label, "weight": "0.5", "k": "3"}
        body, content_type = _multipart(fields, [("image", "query.jpg", _image(seed))])
        return self.request("POST", "/api/search", body, {"Content-Type": content_type})

    def upload(self, seed: int, label: str) -> tuple[int, bytes]:
        body, content_type = _multipart({"labels": label}, [("files", f"photo-{seed}.jpg", _image(seed))])
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {self.token}"}
        return self.request("POST", "/api/images", body, headers)


def _run_load(port: int, token: str, *, concurrency: int, seconds: float, first_seed: int) -> Load:
    load = Load()
    seeds = iter(range(first_seed, first_seed + 10**9))
    stop_at = time.perf_counter() + seconds

    def client(index: int) -> None:
        rng = random.Random(index)
        http_client = Client(port, token)
        while time.perf_counter() < stop_at:
            kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
            with load.lock:
                seed = next(seeds)
            label = rng.choice(LABELS)
            started = time.perf_counter()
            status, error, body = -1, "", b""
            try:
                if kind == "text":
                    status, body = http_client.text_search(rng)
                elif kind == "image":
                    status, body = http_client.image_search(rng.randrange(first_seed, seed + 1))
                else:
                    status, body = http_client.upload(seed, label)
            except (OSError, http.client.HTTPException) as exc:
                error = repr(exc)
            ok = status == (201 if kind == "upload" else 200)
            if not ok and not error:
                error = f"{status}: {body[:200]!r}"
            with load.lock:
                load.samples.append(Sample(kind, started, time.perf_counter(), status, "" if ok else error))
                if kind == "upload" and ok:
                    answer = json.loads(body)
                    # A retried upload may find its first attempt's image: a duplicate, same id.
                    for image_id in [*answer["added"], *(d["id"] for d in answer["duplicates"])]:
                        load.uploaded[image_id] = (seed, label)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 180)
    return load


def _library_state(ids: set[int]) -> dict[str, object]:
    """Statuses of these images in the database, and whether the current generation holds them."""
    import numpy as np
    from django.conf import settings

    from gallery.models import Image
    from search.stores import faiss as search_index

    statuses: dict[str, int] = {}
    ready: set[int] = set()
    for pk, status in Image.objects.filter(pk__in=ids).values_list("pk", "status"):
        statuses[status] = statuses.get(status, 0) + 1
        if status == Image.Status.READY:
            ready.add(pk)
    reader = search_index.IndexReader(settings.INDEX_DIR, background=False)
    indexed: set[int] = set()
    try:
        reader.refresh()
        if reader.manifest is not None and reader.manifest.count:
            query = np.zeros(reader.manifest.dim, dtype=np.float32)
            query[0] = 1.0
            _, found = reader.search(query, reader.manifest.count)
            indexed = {int(i) for i in found[0] if i >= 0}
    finally:
        reader.close()
    return {
        "statuses": statuses,
        "ready": len(ready),
        "missing_rows": len(ids) - sum(statuses.values()),
        "not_indexed": sorted(ids - indexed),
        "lost": sorted(ids - (ready & indexed)),  # not both ready and in the index
    }


def _wait_caught_up(ids: set[int], deadline: Deadline, server: Server, bound: float) -> dict[str, object]:
    end = time.monotonic() + min(bound, deadline.left())
    while True:
        state = _library_state(ids)
        if not state["lost"]:
            return state
        if time.monotonic() > end or not server.alive():
            return state
        time.sleep(1.0)


def _summary(load: Load, seconds: float) -> dict[str, object]:
    out: dict[str, object] = {}
    for kind in [*MIX, "all"]:
        samples = [s for s in load.samples if kind in (s.kind, "all")]
        ok = [s for s in samples if not s.error]
        out[kind] = {
            "requests": len(samples),
            "ok": len(ok),
            "errors": len(samples) - len(ok),
            "requests_per_s": round(len(ok) / seconds, 2),
            "latency": summary_ms([s.end - s.start for s in ok]),
        }
    out["error_examples"] = sorted({s.error for s in load.samples if s.error})[:5]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load (default 60)")
    parser.add_argument("--concurrency", type=int, default=32, help="clients at once (default 32)")
    parser.add_argument("--model", choices=["full", "tiny"], default="full", help="CLIP size (default full)")
    parser.add_argument("--seed-images", type=int, default=64, help="library before the load (default 64)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes (./run: 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn process (./run: 4)")
    parser.add_argument("--max-minutes", type=float, default=20.0, help="bound on the whole run")
    args = parser.parse_args()
    deadline = Deadline(args.max_minutes)

    model = _model_dir(args.model)
    if DATA.exists():
        shutil.rmtree(DATA)
    DATA.mkdir(parents=True)
    redis = RedisServer(DATA).start() if redis_server_installed() else None
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagesearch.settings",
        "DJANGO_SECRET_KEY": "load-test-only-" + uuid.uuid4().hex,
        "DJANGO_DEBUG": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "IMAGESEARCH_DATA_DIR": str(DATA),
        "DATABASE_URL": os.environ.get("IMAGESEARCH_BENCH_DATABASE_URL", f"sqlite:///{DATA / 'db.sqlite3'}"),
        "IMAGESEARCH_CLIP_MODEL": str(model),
        "IMAGESEARCH_LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": redis.url if redis else f"sqla+sqlite:///{DATA / 'broker.sqlite3'}",
        "CELERY_TASK_DEFAULT_QUEUE": "imagesearch-load",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(environment)
    server = Server(environment, web_workers=args.web_workers, threads=args.threads)
    report: dict[str, object] = {
        "args": vars(args),
        "model": str(model),
        "broker": environment["CELERY_BROKER_URL"],
    }
    try:
        _log(f"model {model} ({args.model}); data {DATA}; broker {environment['CELERY_BROKER_URL']}")
        server.manage("migrate", "--noinput")
        server.manage(
            "shell", "-c",
            "from django.contrib.auth.models import User; "
            "User.objects.create_user('load', password=None, is_staff=True, is_superuser=True)",
        )  # fmt: skip
        token = server.manage("create_api_token", "load", "--name", "load test").strip()
        server.start(timeout=deadline.left())

        import django

        django.setup()

        client = Client(server.port, token)

        _log(f"seeding {args.seed_images} images through the API")
        seeded: set[int] = set()
        for start in range(0, args.seed_images, 16):
            files = [
                ("files", f"seed-{i}.jpg", _image(i)) for i in range(start, min(start + 16, args.seed_images))
            ]
            body, content_type = _multipart({"labels": LABELS[start // 16 % len(LABELS)]}, files)
            status, answer = client.request(
                "POST",
                "/api/images",
                body,
                {"Content-Type": content_type, "Authorization": f"Bearer {token}"},
            )
            if status != 201:
                raise RuntimeError(f"seeding failed: {status} {answer[:300]!r}")
            seeded |= set(json.loads(answer)["added"])
        state = _wait_caught_up(seeded, deadline, server, bound=600)
        if state["lost"]:
            raise RuntimeError(f"the seed library was not indexed in time: {state}")
        for i in range(4 * args.web_workers):  # every web process loads the model and the index
            client.text_search(random.Random(i))
            client.image_search(i)

        _log(f"load: {args.concurrency} clients for {args.seconds:.0f} s ({MIX})")
        noise = Noise()
        started = time.perf_counter()
        load = _run_load(
            server.port, token, concurrency=args.concurrency, seconds=args.seconds, first_seed=10_000
        )
        seconds = time.perf_counter() - started
        report["noise"] = noise.result()
        report["load"] = _summary(load, seconds)

        _log(f"waiting for the worker to embed and index the {len(load.uploaded)} uploads")
        caught_up = time.perf_counter()
        state = _wait_caught_up(set(load.uploaded), deadline, server, bound=900)
        report["catch_up_seconds"] = round(time.perf_counter() - caught_up, 1)
        found_first = 0
        for image_id, (seed, label) in load.uploaded.items():
            status, body = client.own_hybrid_search(seed, label)
            results = json.loads(body)["results"] if status == 200 else []
            found_first += bool(results) and results[0]["id"] == image_id
        report["uploads"] = {
            "accepted": len(load.uploaded),
            "ready": state["ready"],
            "not_indexed": len(state["not_indexed"]),
            "missing_rows": state["missing_rows"],
            "found_first_by_their_own_image": found_first,
            "lost": len(state["lost"]),
        }
        report["processes_alive"] = server.alive()
    finally:
        server.stop()
        if redis:
            redis.stop()

    _print(report)
    (bench_env.RESULTS_DIR / "load.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    failed = (
        report["load"]["all"]["errors"]
        or report["uploads"]["lost"]
        or report["uploads"]["found_first_by_their_own_image"] != report["uploads"]["accepted"]
        or not report["processes_alive"]
    )
    return 1 if failed else 0


def _print(report: dict) -> None:
    load = report["load"]
    print()
    print(f"{'kind':8} {'requests':>9} {'errors':>7} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for kind in [*MIX, "all"]:
        row = load[kind]
        lat = row["latency"]
        print(
            f"{kind:8} {row['requests']:>9} {row['errors']:>7} {row['requests_per_s']:>8} "
            f"{lat['p50_ms']:>8.0f} {lat['p90_ms']:>8.0f} {lat['p99_ms']:>8.0f}"
        )
    if load["error_examples"]:
        print("errors, e.g.:", *load["error_examples"], sep="\n  ")
    print(
        "uploads:",
        json.dumps(report["uploads"]),
        f"(caught up {report['catch_up_seconds']} s after the load)",
    )
    print("machine:", json.dumps(report["noise"]))


if __name__ == "__main__":
    sys.exit(main())
