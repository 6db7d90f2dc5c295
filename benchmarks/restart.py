"""Restart cost: from starting the web server to its first answered search, against loading the
model alone, with the library indexed; and the seed-faithful baseline, extrapolated.

* ``web_first_search_s``: gunicorn started as ``./run`` starts it (its master loads the model and
  verifies and maps the current generation before forking the workers), until ``GET /?q=<text>``
  first answers 200 with results. Measured from the moment the process is spawned.
* ``model_load_s``: a fresh Python process, with the same environment, that sets Django up and
  loads the model (``search.encoder.ensure_models``, the code path the server uses), from spawn
  to loaded. ratio = web / model. Each is measured ``rounds`` times, interleaved; medians.
* The seed-faithful baseline: the original single-process design embedded every image again at
  start. Its cost is the model load plus, per image, decoding the stored file and encoding it
  (batch 16), timed on a sample of real 3 MP JPEGs and extrapolated to the library's size.
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np

from . import env
from .timing import noise
from .web import Gunicorn

_LOAD_MODEL = (
    "import time, django; django.setup(); from search import encoder; encoder.ensure_models(); "
    "print(time.time())"
)


def _model_load_s() -> float:
    started = time.time()
    loaded = env.python_last_line(["-c", _LOAD_MODEL], what="model load", IMAGESEARCH_TORCH_THREADS="1")
    return float(loaded) - started


def _first_search_s(workers: int, log: Path) -> float:
    server = Gunicorn(workers=workers, threads=4, log=log)
    started = time.perf_counter()
    server.start()
    try:
        path = "/?" + urlencode({"q": "first search after a restart"})
        deadline = started + 600
        while time.perf_counter() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                conn.close()
                if response.status == 200 and b'class="card"' in body:
                    return time.perf_counter() - started
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.02)
        raise RuntimeError("gunicorn did not answer a search within 600 s")
    finally:
        server.stop()


def _seed_faithful_per_image_s(sample: int, batch: int = 16) -> float:
    """Seconds per image to decode a stored 3 MP JPEG and encode it, in this process."""
    from PIL import Image as PILImage

    from search import encoder

    from .ingest import _images

    paths = _images(sample)
    encoder.get_model()
    started = time.perf_counter()
    for start in range(0, sample, batch):
        images = []
        for path in paths[start : start + batch]:
            with PILImage.open(path) as image:
                images.append(image.convert("RGB"))
        encoder.encode_images(images, batch_size=batch)
    return (time.perf_counter() - started) / sample


def run(size: int, *, workers: int, rounds: int = 2, sample: int = 32) -> dict[str, Any]:
    out: dict[str, Any] = {"size": size, "workers": workers, "rounds": rounds}
    with noise(out):
        model, web = [], []
        for i in range(rounds):
            model.append(_model_load_s())
            web.append(_first_search_s(workers, env.RESULTS_DIR / f"gunicorn-restart-{i}.log"))
        out["model_load_s"] = [round(x, 2) for x in model]
        out["web_first_search_s"] = [round(x, 2) for x in web]
        out["model_load_p50_s"] = round(float(np.median(model)), 2)
        out["web_first_search_p50_s"] = round(float(np.median(web)), 2)
        out["ratio"] = round(out["web_first_search_p50_s"] / out["model_load_p50_s"], 3)
        per_image = _seed_faithful_per_image_s(sample)
        out["seed_faithful"] = {
            "sample_images": sample,
            "seconds_per_image": round(per_image, 4),
            "extrapolated_s": round(out["model_load_p50_s"] + per_image * size, 1),
        }
        out["seed_faithful"]["vs_web"] = round(
            out["seed_faithful"]["extrapolated_s"] / out["web_first_search_p50_s"], 1
        )
    return out
