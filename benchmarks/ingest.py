"""Target 1: end-to-end ingest throughput against the model's own forward throughput.

The product path, all real: one bulk upload request through the admin upload view (staff user,
multipart body prepared beforehand, handled by Django's request handler in this process), rows
and files written by ``images_create``, ids enqueued on Redis, a real Celery worker process
(the ``./run`` configuration: prefork, one process, torch threads = cores / processes) that
decodes, embeds, stores vectors and coalesces index rebuilds, until every image of the upload
is searchable (ready, and the current index generation holds it).

Baselines, in the same run: the same model, in a fresh process set up like the worker (same
environment, same threads), encoding already-decoded images of the size the worker feeds it, at
the same batch size, once in the runtime the worker serves and once in torch (today's encoder
before issue 20). The upload is cut into rounds; both baselines are measured before each round's
upload and once after the last (their medians count): the machine's drift within the run
weighs on the baselines and on the end to end alike. ratio = (images / end-to-end seconds) /
(images / model seconds) against the served runtime's median; ``ratio_vs_torch`` the same
against torch's.

The images are photo-like JPEGs of 2048x1536 (3 MP, quality 90), generated once and cached.

Alone: ``python -m benchmarks.ingest --images 256 --batch 16 [--rounds 2]`` starts from an empty
benchmark database (``env.configure(fresh=True)``), runs this and prints both ratios and the
whole result as JSON (also written to ``benchmarks/results/ingest-latest.json``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.constants import UPLOAD_URL
from tests.support.processes import CeleryWorker
from tests.support.waiting import wait_until_indexed

from . import env
from .timing import _cpu_ticks_of, _tree_pids, noise

IMAGE_SIZE = (2048, 1536)


def _images(count: int) -> list[Path]:
    from PIL import Image as PILImage

    from tests.support.images import make_image

    folder = env.RESULTS_DIR / "cache" / f"jpeg-{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        path = folder / f"{seed:05d}.jpg"
        if not path.exists():
            small = make_image(10_000 + seed, (IMAGE_SIZE[0] // 4, IMAGE_SIZE[1] // 4))
            big = small.resize(IMAGE_SIZE, PILImage.Resampling.BICUBIC)
            # Grain at full resolution, so that the JPEG has a photo's size and decoding cost.
            grain = np.random.default_rng(seed).normal(0, 6, (IMAGE_SIZE[1], IMAGE_SIZE[0], 3))
            pixels = np.clip(np.asarray(big, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
            out = io.BytesIO()
            PILImage.fromarray(pixels).save(out, "JPEG", quality=90)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(out.getvalue())
            tmp.replace(path)
        paths.append(path)
    return paths


def _multipart(paths: list[Path], labels: str) -> tuple[bytes, str]:
    boundary = f"bench{uuid.uuid4().hex}"
    parts = []
    for path in paths:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode()
        )
        parts.append(path.read_bytes())
        parts.append(b"\r\n")
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="labels"\r\n\r\n{labels}\r\n'.encode()
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _worker(log: Path) -> CeleryWorker:
    """``celery worker`` as ``./run`` starts it, without beat."""
    args = ["--concurrency", "1", "--without-mingle", "--without-gossip"]
    args += ["-Q", env.subprocess_env()["CELERY_TASK_DEFAULT_QUEUE"]]
    # Torch threads as ./run leaves them (cores / worker processes), whatever this process uses.
    worker_env = env.subprocess_env(IMAGESEARCH_LOG_LEVEL="INFO", IMAGESEARCH_TORCH_THREADS="0")
    return CeleryWorker(*args, log_path=log, env=worker_env)


def _wait_searchable(ids: list[int], timeout: float) -> float:
    """Until the upload is searchable; the moment it became so (perf_counter)."""
    wait_until_indexed(ids, timeout=timeout, interval=0.05)
    return time.perf_counter()


def _upload(client: Any, paths: list[Path], labels: str) -> list[int]:
    body, content_type = _multipart(paths, labels)
    response = client.generic("POST", UPLOAD_URL, body, content_type, HTTP_ACCEPT="application/json")
    if response.status_code != 200:
        raise RuntimeError(f"upload answered {response.status_code}: {response.content[:500]!r}")
    data = response.json()
    if data.get("refused") or len(data["added"]) != len(paths):
        raise RuntimeError(f"upload refused images: {data}")
    return data["added"]


def _model_throughput(folder: Path, *, batch: int, rounds: int, runtime: str | None = None) -> dict[str, Any]:
    """The model alone, in a fresh process set up like the worker (see model_forward)."""
    import json

    args = ["-m", "benchmarks.model_forward", str(folder), "--batch", str(batch), "--rounds", str(rounds)]
    if runtime:
        args += ["--runtime", runtime]
    # The model's own threads, as ./run's worker has them (IMAGESEARCH_TORCH_THREADS=0: automatic).
    return json.loads(env.python_last_line(args, what="model_forward", IMAGESEARCH_TORCH_THREADS="0"))


def run(*, images: int, staff_client: Any, batch: int, rounds: int = 2) -> dict[str, Any]:
    from search import encoder

    out: dict[str, Any] = {"images": images, "batch": batch, "rounds": rounds, "runtime": encoder.runtime()}
    paths = _images(images + batch)
    out["image_size"] = list(IMAGE_SIZE)
    out["mean_file_kb"] = round(float(np.mean([p.stat().st_size for p in paths])) / 1024, 1)
    log = env.RESULTS_DIR / "ingest-worker.log"
    log.unlink(missing_ok=True)
    worker = _worker(log).start()
    served: list[dict[str, Any]] = []
    torch_runs: list[dict[str, Any]] = []
    seconds = upload_s = upload_cpu_s = worker_cpu_s = 0.0
    hz = os.sysconf("SC_CLK_TCK")
    per_round = max(1, images // rounds)
    try:
        with noise(out):
            # Warm the worker (model loaded, first generation written), as in a running system.
            warm = _upload(staff_client, paths[images:], "warm up")
            _wait_searchable(warm, timeout=300)
            for start in range(0, images, per_round):
                served.append(_model_throughput(paths[0].parent, batch=batch, rounds=3))
                torch_runs.append(_model_throughput(paths[0].parent, batch=batch, rounds=3, runtime="torch"))
                started = time.perf_counter()
                worker_ticks, own = _cpu_ticks_of(_tree_pids(worker.proc.pid)), os.times()
                ids = _upload(staff_client, paths[start : start + per_round], "bulk, benchmark")
                upload_s += time.perf_counter() - started
                upload_cpu_s += (os.times().user + os.times().system) - (own.user + own.system)
                seconds += _wait_searchable(ids, timeout=1800) - started
                worker_cpu_s += (_cpu_ticks_of(_tree_pids(worker.proc.pid)) - worker_ticks) / hz
            served.append(_model_throughput(paths[0].parent, batch=batch, rounds=3))
            torch_runs.append(_model_throughput(paths[0].parent, batch=batch, rounds=3, runtime="torch"))
    finally:
        worker.stop()
    model_rate = float(np.median([m["images_per_s_median"] for m in served]))
    torch_rate = float(np.median([m["images_per_s_median"] for m in torch_runs]))
    out.update(
        {
            "upload_request_s": round(upload_s, 2),
            "end_to_end_s": round(seconds, 2),
            "end_to_end_images_per_s": round(images / seconds, 2),
            # Where the cores went in the end-to-end rounds, per image: the upload request (this
            # process: multipart, decode, thumbnail, hashing, files, rows) and the worker's tree.
            "upload_cpu_ms_per_image": round(1000 * upload_cpu_s / images, 1),
            "worker_cpu_ms_per_image": round(1000 * worker_cpu_s / images, 1),
            "end_to_end_ms_per_image": round(1000 * seconds / images, 1),
            "model_runs": served,
            "torch_runs": torch_runs,
            "model_images_per_s": round(model_rate, 2),
            "torch_images_per_s": round(torch_rate, 2),
            "model_cpu_ms_per_image": float(np.median([m["cpu_ms_per_image"] for m in served])),
            "model_runtime": served[0]["runtime"],
            "worker_torch_threads": served[0]["torch_threads"],
            "ratio": round((images / seconds) / model_rate, 3),
            "ratio_vs_torch": round((images / seconds) / torch_rate, 3),
            "worker_log": str(log.relative_to(env.ROOT)),
        }
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    env.configure(fresh=True)
    os.environ["IMAGESEARCH_TORCH_THREADS"] = "1"  # this process is the web process, as in the suite
    env.build_model()
    env.setup_django()
    warnings.filterwarnings("ignore", message="No directory at")  # whitenoise, no collectstatic

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    staff = get_user_model().objects.create_superuser("bench", "bench@example.org", "bench-pw-123456")
    client = Client()
    client.force_login(staff)
    try:
        result = run(images=args.images, staff_client=client, batch=args.batch, rounds=args.rounds)
    finally:
        env.purge_queue()
    (env.RESULTS_DIR / "ingest-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(
        f"ingest {result['end_to_end_images_per_s']} img/s; {result['model_runtime']} alone "
        f"{result['model_images_per_s']} img/s, torch alone {result['torch_images_per_s']} img/s\n"
        f"ratio vs served runtime: {result['ratio']} (target >= 0.9)\n"
        f"ratio vs torch:          {result['ratio_vs_torch']} (target >= 1.15)\n"
        f"per image: {result['end_to_end_ms_per_image']} ms end to end; CPU of the upload request "
        f"{result['upload_cpu_ms_per_image']} ms, of the worker {result['worker_cpu_ms_per_image']} ms, "
        f"of the model alone {result['model_cpu_ms_per_image']} ms "
        f"(other processes {result['noise']['other_cpu']:.0%} of the machine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
