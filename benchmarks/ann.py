"""Target 3: the opt-in approximate index against the exact flat one, at a library size.

Both are built by the product (``search.stores.faiss.write_generation``) from the library's vectors
(clustered, see :mod:`benchmarks.library`) and served by the product's ``IndexReader``
(memory-mapped). For each kind: build seconds (train + add + write + checksum), file size, the
process's memory before and after loading it (private, and mapped from the file), recall@10
against exact results for queries near stored vectors (what the target is about) and for queries
far from any (cosine ~0.5 to their nearest stored vector, like a text query), and the p50 of
single-query searches, interleaved with the flat index's over the same queries.
"""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import env
from .library import queries_near
from .timing import noise, summary_ms
from .web import memory_of


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))


def compare(
    kind: str, ids: np.ndarray, vectors: np.ndarray, *, flat_dir: Path | None, queries: int = 200
) -> dict[str, Any]:
    import faiss

    from search.stores import faiss as search_index

    model = "benchmark"
    out: dict[str, Any] = {"kind": kind, "size": len(ids)}
    with noise(out):
        workdir = env.DATA_DIR / f"ann-{kind}-{len(ids)}"
        shutil.rmtree(workdir, ignore_errors=True)
        current = search_index.read_current_manifest(flat_dir) if flat_dir is not None else None
        if current is None or current.kind != "flat":  # auto built an approximate index there
            flat_dir = env.DATA_DIR / f"ann-flat-{len(ids)}"
            shutil.rmtree(flat_dir, ignore_errors=True)
            search_index.write_generation(flat_dir, ids, vectors, model=model, image_weight=0.5)
        flat = search_index.IndexReader(flat_dir, check_interval=3600)
        flat.refresh()

        gc.collect()
        t = time.perf_counter()
        manifest = search_index.write_generation(
            workdir, ids, vectors, model=model, image_weight=0.5, kind=kind
        )
        out["build_s"] = round(time.perf_counter() - t, 2)
        out["index_mib"] = round(manifest.size_bytes / 2**20, 1)
        gc.collect()
        before = memory_of(_self(), index_file_pattern=str(workdir))
        reader = search_index.IndexReader(workdir, check_interval=3600)
        t = time.perf_counter()
        reader.refresh()
        out["load_s"] = round(time.perf_counter() - t, 2)
        reader.search(vectors[:2], 10)  # touch it as serving does
        after = memory_of(_self(), index_file_pattern=str(workdir))

        near = queries_near(vectors, queries, cosine=0.95, seed=11)
        far = queries_near(vectors, queries, cosine=0.5, seed=12)
        exact_index = faiss.IndexFlatIP(vectors.shape[1])
        exact_index.add(vectors)
        for name, qs in (("near", near), ("far", far)):
            _, exact = exact_index.search(qs, 10)
            _, found = reader.search(qs, 10)
            out[f"recall_at_10_{name}"] = round(_recall(found, ids[exact]), 4)
        del exact_index

        times: dict[str, list[float]] = {"flat": [], kind: []}
        for q in near[:100]:
            for name, r in (("flat", flat), (kind, reader)):
                t = time.perf_counter()
                r.search(q[None, :], 10)
                times[name].append(time.perf_counter() - t)
        out["memory_mib"] = {
            "private_added": round(after["private"] - before["private"], 1),
            "mapped_index_rss": after["index_rss"],
        }
        out["flat"] = summary_ms(times["flat"])
        out["approximate"] = summary_ms(times[kind])
        out["speedup_p50"] = round(out["flat"]["p50_ms"] / max(1e-9, out["approximate"]["p50_ms"]), 2)
        out["nprobe_or_ef"] = (
            {manifest.param: manifest.param_value} if manifest.param else _search_parameter(kind)
        )
        out["recall_at_build"] = {"text": manifest.recall_text, "image": manifest.recall_image}
        reader.close()
        flat.close()
        del reader, flat
        gc.collect()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def _self() -> int:
    import ctypes
    import os

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # so that freed build memory does not count
    return os.getpid()


def _search_parameter(kind: str) -> dict[str, int]:
    from search.stores.faiss import kinds

    if kind == "ivf":
        return {"nprobe": kinds.IVF_NPROBE}
    if kind == "hnsw":
        return {"M": kinds.HNSW_M, "efSearch": kinds.HNSW_EF_SEARCH}
    return {}
