"""Where one embedding task spends its time, besides the model.

``python -m benchmarks.profile_ingest [--images 64] [--batch 16]`` starts from an empty
benchmark database, uploads ``--images`` of ingest's 3 MP JPEGs through the admin view (no
worker runs: the tasks stay queued and are purged), then runs ``images_embed`` on them here,
``--batch`` ids per call as the worker's tasks get them, under cProfile, with the worker's
thread settings; then the model alone (``encode_images`` of the runtime, what
benchmarks.model_forward times) on the same decoded pictures. Prints ms per image of each
stage of the task (see STAGES) beside the model alone, and the upload request's own time per
image (one thread, nothing beside it).

Nothing of this run competes while it profiles (no worker, no upload beside the task), so
the figures are the task's own cost, not ingest's contention with itself.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
import warnings

from . import env

#: Stages of a task, by the function that does each (cumulative time, callees included).
STAGES = (
    ("whole task (images_embed)", "search/ingest/pipeline.py", "images_embed"),
    ("decode (_open_for_embedding)", "search/ingest/pipeline.py", "_open_for_embedding"),
    ("label vectors", "search/ingest/pipeline.py", "label_vectors_ensure"),
    ("encode_images (crop, preprocessing, model, normalise)", "search/encoder/__init__.py", "encode_images"),
    ("  preprocessing (resize, crop, normalise to pixels)", "search/encoder/preprocessing.py", "pixels"),
    ("  model run (InferenceSession.run / forward)", "onnxruntime", "run"),
    ("mark ready (UPDATEs + one commit, per batch)", "search/ingest/pipeline.py", "_rows_write"),
    ("mark failed", "search/ingest/pipeline.py", "_mark_failed"),
    ("claims (claim, renew, release, free lost)", "gallery/models.py", "claim"),
    ("", "gallery/models.py", "claims_release"),
    ("", "search/ingest/claims.py", "claims_free_lost"),
    ("rebuild request", "search/dispatch.py", "index_rebuild_request"),
    ("int8 check", "search/ingest/pipeline.py", "int8_measure_if_due"),
    ("rows read (select + prefetch labels)", "django/db/models/query.py", "_fetch_all"),
)


def breakdown(stats: pstats.Stats, images: int) -> dict[str, float]:
    """Cumulative milliseconds per image of each stage (a stage's callees included; a blank
    name adds to the stage above)."""
    out: dict[str, float] = {}
    last = ""
    for name, file_part, function in STAGES:
        last = name or last
        for (filename, _line, fname), (_cc, _nc, _tt, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            if fname == function and file_part in filename:
                out[last] = out.get(last, 0.0) + cumtime
    return {k: round(1000 * v / images, 2) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_ingest")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    env.configure(fresh=True)
    os.environ["IMAGESEARCH_TORCH_THREADS"] = "0"  # the worker's threads: cores / processes
    env.build_model()
    env.setup_django()
    warnings.filterwarnings("ignore", message="No directory at")

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from gallery.models import Image
    from search import encoder
    from search.ingest import pipeline

    from .ingest import _images, _upload

    call_command("migrate", verbosity=0)
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("bench", "b@example.org", "bench-pw-123456"))
    paths = _images(args.images + args.batch)
    try:
        warm = _upload(client, paths[args.images :], "warm up")
        pipeline.images_embed(image_ids=warm)  # model loaded, label vectors made
        started = time.perf_counter()
        ids = _upload(client, paths[: args.images], "bulk, benchmark")
        upload_s = time.perf_counter() - started
    finally:
        env.purge_queue()
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for start in range(0, len(ids), args.batch):
        pipeline.images_embed(image_ids=ids[start : start + args.batch])
    profiler.disable()
    task_s = time.perf_counter() - started
    env.purge_queue()
    assert Image.objects.filter(pk__in=ids, status=Image.Status.READY).count() == len(ids)
    # The model alone on the same pictures, decoded as the task decodes them.
    pictures = [pipeline._open_for_embedding(image) for image in Image.objects.filter(pk__in=ids)]
    model = encoder.get_model()
    started = time.perf_counter()
    for start in range(0, len(pictures), args.batch):
        model.encode_images(pictures[start : start + args.batch], batch_size=args.batch)
    model_s = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    out = {
        "images": len(ids),
        "batch": args.batch,
        "threads": encoder.threads(),
        "runtime": f"{model.runtime} {model.provider} {model.precision}",
        "task_ms_per_image_wall": round(1000 * task_s / len(ids), 2),
        "model_alone_ms_per_image_wall": round(1000 * model_s / len(ids), 2),
        # The upload request alone (no worker beside it): what it takes from the cores ingest shares.
        "upload_request_ms_per_image_wall": round(1000 * upload_s / len(ids), 2),
        "profile": breakdown(stats, len(ids)),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
