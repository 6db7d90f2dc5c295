"""Issue 20: the ONNX Runtime encoder against the torch encoder, in one process, in one run.

Both runtimes load the benchmark's model (the full-size random CLIP) through the product's own
classes (``search.encoder.torch_runtime.TorchEncoder``, ``search.encoder.onnx_runtime.OnnxEncoder``
over the export the product made), and are timed in interleaved rounds, so that the machine's
drift within the run weighs on both alike:

- one text query, one thread (a web process): p50 of each, ratio onnx / torch (goal <= 0.55),
  and int8 / torch for information;
- 16 images of the size the worker feeds the model, at the worker's threads (the cores): ms per
  batch of each;
- the same top 10: this run's query texts, encoded by each runtime, searched in the current
  index (the library at this size): the share of queries whose top 10 is torch's (goal 1.0), and
  the lowest cosine between the two vectors of one text;
- each runtime's own load time (a fresh process, see restart), for information.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from . import env
from .timing import noise, summary_ms


def _load(name: str, runtime: str, *, threads: int, precision: str = "fp32") -> Any:
    from search import encoder
    from search.encoder import cache

    if runtime == "torch":
        from search.encoder.torch_runtime import TorchEncoder

        return TorchEncoder(name, device="cpu", threads=threads, setting="IMAGESEARCH_CLIP_MODEL")
    from search.encoder.onnx_runtime import OnnxEncoder

    directory = cache.export_in_subprocess(name, encoder.export_root(), setting="IMAGESEARCH_CLIP_MODEL")
    return OnnxEncoder(directory, threads=threads, precision=precision)


def _images(count: int) -> list[Any]:
    from PIL import Image as PILImage

    from .ingest import _images as jpegs

    images = []
    for path in jpegs(count):
        with PILImage.open(path) as image:  # the worker's 512 px thumbnail, decoded
            image.draft("RGB", (512, 512))
            rgb = image.convert("RGB")
        rgb.thumbnail((512, 512))
        images.append(rgb)
    return images


def run(*, queries: int = 60, rounds: int = 5, image_rounds: int = 3) -> dict[str, Any]:
    import torch

    from search import encoder
    from search.stores import faiss_store

    from .query import query_texts

    name = encoder.model_name()
    cores = len(os.sched_getaffinity(0))
    out: dict[str, Any] = {"queries": queries, "rounds": rounds, "cores": cores}
    texts = query_texts(queries, seed=20)
    with noise(out):
        web = {
            "torch": _load(name, "torch", threads=1),
            "onnx": _load(name, "onnx", threads=1),
            "onnx_int8": _load(name, "onnx", threads=1, precision="int8"),
        }
        torch.set_num_threads(1)
        for model in web.values():  # warm up
            model.encode_texts(texts[:4], batch_size=1)
        times: dict[str, list[float]] = {key: [] for key in web}
        for _ in range(rounds):
            for text in texts:
                for key, model in web.items():
                    started = time.perf_counter()
                    model.encode_texts([text], batch_size=1)
                    times[key].append(time.perf_counter() - started)
        text = {key: summary_ms(values) for key, values in times.items()}
        out["text_1_thread"] = text
        out["text_ratio"] = round(text["onnx"]["p50_ms"] / text["torch"]["p50_ms"], 3)
        out["text_ratio_int8"] = round(text["onnx_int8"]["p50_ms"] / text["torch"]["p50_ms"], 3)

        # The same top 10 in this size's index, for each text.
        vectors = {
            key: encoder.normalize(web[key].encode_texts(texts, batch_size=16)) for key in ("torch", "onnx")
        }
        cosines = (vectors["torch"] * vectors["onnx"]).sum(axis=1)
        reader = faiss_store.index_reader()
        reader.refresh()
        same = 0
        for a, b in zip(vectors["torch"], vectors["onnx"], strict=True):
            same += set(reader.search(a, 10)[1][0].tolist()) == set(reader.search(b, 10)[1][0].tolist())
        out["same_top10_share"] = round(same / len(texts), 3)
        out["min_cosine"] = round(float(cosines.min()), 6)
        del web

        # 16 images at the worker's threads.
        images = _images(16)
        worker = {
            "torch": _load(name, "torch", threads=cores),
            "onnx": _load(name, "onnx", threads=cores),
            "onnx_int8": _load(name, "onnx", threads=cores, precision="int8"),
        }
        torch.set_num_threads(cores)
        for model in worker.values():
            model.encode_images(images, batch_size=16)
        batch_times: dict[str, list[float]] = {key: [] for key in worker}
        for _ in range(image_rounds):
            for key, model in worker.items():
                started = time.perf_counter()
                model.encode_images(images, batch_size=16)
                batch_times[key].append(time.perf_counter() - started)
        torch.set_num_threads(1)  # this process serves queries like a web process again
        out["images_16_worker_threads"] = {
            key: round(float(np.median(values)) * 1000, 1) for key, values in batch_times.items()
        }
        out["images_ratio"] = round(
            out["images_16_worker_threads"]["onnx"] / out["images_16_worker_threads"]["torch"], 3
        )
        del worker
    out["provider"] = "CPUExecutionProvider"
    out["model"] = str(env.MODEL_DIR.name)
    return out
