"""The model's own image throughput, in a process configured like the Celery worker.

``python -m benchmarks.model_forward FOLDER --batch 16 --rounds 3`` prints one JSON line. It
runs in a fresh process with the worker's environment and thread settings (the same
``search.embedding`` code path: ``torch_threads()`` for one worker process), so the baseline
and the worker differ only in what the ingest pipeline adds around the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def measure(folder: Path, *, batch: int, rounds: int) -> dict[str, object]:
    import django

    django.setup()
    from PIL import Image as PILImage

    from search import embedding

    model = embedding.get_model()  # imports torch the way the worker does
    import torch

    images = []
    for path in sorted(folder.glob("*.jpg"))[:batch]:
        # What the worker feeds the model: the 512 px thumbnail, decoded.
        with PILImage.open(path) as image:
            image.draft("RGB", (512, 512))
            rgb = image.convert("RGB")
        rgb.thumbnail((512, 512))
        images.append(rgb)
    model.encode(images, batch_size=batch)  # warm up
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        model.encode(images, batch_size=batch, convert_to_numpy=True)
        times.append(time.perf_counter() - started)
    return {
        "torch_threads": torch.get_num_threads(),
        "images_per_s_best": round(batch / min(times), 2),
        "images_per_s_median": round(batch / float(np.median(times)), 2),
        "batch_seconds": [round(t, 3) for t in times],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.folder, batch=args.batch, rounds=args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
