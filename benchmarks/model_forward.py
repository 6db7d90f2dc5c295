"""The model's own image throughput, in a process configured like the Celery worker.

``python -m benchmarks.model_forward FOLDER --batch 16 --rounds 3 [--runtime torch|onnx]``
prints one JSON line. It runs in a fresh process with the worker's environment and thread
settings (the same ``search.encoder`` code path: ``threads()`` for one worker process), so the
baseline and the worker differ only in what the ingest pipeline adds around the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def measure(folder: Path, *, batch: int, rounds: int, runtime: str | None = None) -> dict[str, object]:
    import django

    django.setup()
    from django.conf import settings
    from PIL import Image as PILImage

    from search import encoder

    if runtime:
        settings.IMAGESEARCH_ENCODER = runtime
    model = encoder.get_model()  # loads the runtime the way the worker does

    images = []
    for path in sorted(folder.glob("*.jpg"))[:batch]:
        # What the worker feeds the model: the 512 px thumbnail, decoded.
        with PILImage.open(path) as image:
            image.draft("RGB", (512, 512))
            rgb = image.convert("RGB")
        rgb.thumbnail((512, 512))
        images.append(rgb)
    model.encode_images(images, batch_size=batch)  # warm up
    times = []
    cpu = os.times()
    for _ in range(rounds):
        started = time.perf_counter()
        model.encode_images(images, batch_size=batch)
        times.append(time.perf_counter() - started)
    cpu_s = (os.times().user + os.times().system) - (cpu.user + cpu.system)
    return {
        "runtime": f"{model.runtime} {model.provider} {model.precision}",
        "torch_threads": encoder.threads(),
        "images_per_s_best": round(batch / min(times), 2),
        "images_per_s_median": round(batch / float(np.median(times)), 2),
        "batch_seconds": [round(t, 3) for t in times],
        # CPU (all the model's threads) per image: what the model takes from cores it shares.
        "cpu_ms_per_image": round(1000 * cpu_s / (batch * rounds), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runtime", choices=["torch", "onnx"], default=None)
    args = parser.parse_args()
    print(json.dumps(measure(args.folder, batch=args.batch, rounds=args.rounds, runtime=args.runtime)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
