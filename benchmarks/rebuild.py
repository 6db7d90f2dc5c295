"""Target 4: rebuilding the index from the database, switching generations, sharing memory.

* ``rebuild``: ``search.ingest.rebuild.index_rebuild()`` at a library size (read the ready rows' vectors from
  the database, build, write the generation atomically, checksum), with the database file warm
  in the page cache and, at the largest size, cold (its pages dropped with
  ``posix_fadvise(DONTNEED)`` first: only that file's, nothing else on the machine).
  Baseline: reading the same bytes back from the index file we just wrote (the I/O floor).
* ``memory``: N gunicorn workers serving the same generation; each one's Rss / Pss (from
  ``/proc/<pid>/smaps``) and the part of it that is the mapped index. One shared copy means
  the index's Pss summed over the workers equals the file size once, not N times.
* ``switch``: requests keep coming at concurrency 4 while a rebuild writes a new generation and
  every worker loads it in the background; no request may fail, and the longest stretch with no
  response completed shows whether answering paused.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import datetime
from typing import Any

from . import env
from .timing import noise, summary_ms
from .web import Gunicorn, LoadResult, load, memory_of, summarise


def _drop_file_cache(path: os.PathLike | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _database_files() -> list[str]:
    from django.db import connection

    if connection.vendor != "sqlite":
        return []
    name = str(connection.settings_dict["NAME"])
    return [p for p in (name, name + "-wal") if os.path.exists(p)]


def rebuild(size: int, *, cold: bool) -> dict[str, Any]:
    from search.ingest import rebuild as search_rebuild
    from search.stores import faiss as search_index
    from search.stores import faiss_store

    out: dict[str, Any] = {"size": size}
    with noise(out):
        warm = search_rebuild.index_rebuild()
        out["warm_s"] = round(warm.seconds, 2)
        out["warm_read_s"] = round(getattr(warm, "read_seconds", float("nan")), 2)
        manifest = search_index.read_current_manifest(faiss_store.index_dir())
        path = faiss_store.index_dir() / manifest.index_file
        out["index_bytes"] = manifest.size_bytes
        # I/O floor: reading the generation file once (warm page cache).
        t = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while f.read(1 << 24):
                pass
        out["read_index_file_s"] = round(time.perf_counter() - t, 3)
        if cold:
            for name in _database_files():
                _drop_file_cache(name)
            report = search_rebuild.index_rebuild()
            out["cold_s"] = round(report.seconds, 2)
            out["cold_read_s"] = round(getattr(report, "read_seconds", float("nan")), 2)
    out["seconds"] = max(out["warm_s"], out.get("cold_s", 0.0))
    return out


def memory(size: int, *, worker_counts: tuple[int, ...]) -> dict[str, Any]:
    from search.stores import faiss as search_index
    from search.stores import faiss_store
    from search.stores.faiss import flat_scan

    search_index.reset_readers()  # this process's mapping would take a share of the Pss
    manifest = search_index.read_current_manifest(faiss_store.index_dir())
    index_mib = manifest.size_bytes / 2**20
    out: dict[str, Any] = {
        "size": size,
        "index_mib": round(index_mib, 1),
        # Small flat indexes are scanned from a private copy per process (search.stores.faiss.flat_scan).
        "shared": manifest.kind != "flat" or manifest.size_bytes > flat_scan.PRIVATE_COPY_MAX_BYTES,
        "by_workers": [],
    }
    with noise(out):
        for workers in worker_counts:
            log = env.RESULTS_DIR / f"gunicorn-memory-{workers}.log"
            log.unlink(missing_ok=True)
            server = Gunicorn(workers=workers, threads=4, log=log).start()
            try:
                server.wait_ready(warm_requests=6 * workers)
                per_worker = [memory_of(pid) for pid in server.worker_pids()]
                # The master holds what it loaded before forking (model, index), shared with
                # the workers: its share belongs to the total.
                master = memory_of(server.proc.pid)
            finally:
                server.stop()
            total = {key: round(sum(w[key] for w in per_worker), 1) for key in per_worker[0]}
            with_master = round(total["pss"] + master["pss"], 1)
            out["by_workers"].append(
                {
                    "workers": workers,
                    "total": total,
                    "per_worker": per_worker,
                    "master": master,
                    "pss_with_master": with_master,
                }
            )
    first, last = out["by_workers"][0], out["by_workers"][-1]
    extra_workers = last["workers"] - first["workers"]
    growth = last["pss_with_master"] - first["pss_with_master"]
    out["index_copies"] = round((last["total"]["index_pss"] + last["master"]["index_pss"]) / index_mib, 3)
    out["growth_mib"] = round(growth, 1)
    out["growth_per_worker_mib"] = round(growth / max(1, extra_workers), 1)
    # Growth against what N private copies of the index alone would add.
    out["growth_vs_private_copies"] = round(growth / max(1e-9, extra_workers * index_mib), 3)
    return out


_LOADED = re.compile(
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+) INFO search\.index(?:\.reader)?: "
    r"search index generation (\d+) loaded"
)


def _loads_of(log: str, generation: int) -> list[float]:
    times = []
    for line in log.splitlines():
        match = _LOADED.search(line)
        if match and int(match.group(3)) == generation:
            moment = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
            times.append(moment.timestamp() + int(match.group(2)) / 1000)
    return times


def switch(size: int, *, workers: int, before_s: float) -> dict[str, Any]:
    from search.ingest import rebuild as search_rebuild
    from search.stores import faiss as search_index
    from search.stores import faiss_store

    out: dict[str, Any] = {"size": size, "workers": workers, "concurrency": 4}
    log = env.RESULTS_DIR / "gunicorn-switch.log"
    log.unlink(missing_ok=True)
    server = Gunicorn(workers=workers, threads=4, log=log).start()
    stop = threading.Event()
    result = LoadResult()
    with noise(out):
        try:
            server.wait_ready(warm_requests=6 * workers)
            queries = [f"switch query {i}" for i in range(40)]  # cached after their first use
            thread = threading.Thread(
                target=load,
                kwargs={
                    "port": server.port,
                    "concurrency": 4,
                    "texts": lambda i: queries[i % 40],
                    "stop": stop,
                    "result": result,
                },
            )
            thread.start()
            # Enough answers before the switch to know the usual latency (slow at 1M).
            settle = time.perf_counter() + 60
            time.sleep(before_s)
            while len(result.samples) < 20 and time.perf_counter() < settle:
                time.sleep(0.5)
            rebuild_started = time.perf_counter()
            report = search_rebuild.index_rebuild()
            published = time.perf_counter()
            published_wall = time.time()
            generation = report.generation
            deadline = time.monotonic() + 180
            while len(_loads_of(log.read_text(errors="replace"), generation)) < workers:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            loaded_wall = _loads_of(log.read_text(errors="replace"), generation)
            time.sleep(5)
            stop.set()
            thread.join()
        finally:
            stop.set()
            server.stop()
    loaded_at = [published + (t - published_wall) for t in loaded_wall]
    load_end = max(loaded_at, default=published)
    samples = result.samples
    before = [e - s for s, e, _ in samples if e < rebuild_started]
    rebuilding = [e - s for s, e, _ in samples if rebuild_started <= e < published]
    loading = [e - s for s, e, _ in samples if published <= e <= load_end]
    after = [e - s for s, e, _ in samples if s > load_end]
    # Answering pauses show as a stretch with no response at all while the workers load.
    marks = sorted([published, load_end] + [e for _, e, _ in samples if published <= e <= load_end])
    gaps = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    manifest = search_index.read_current_manifest(faiss_store.index_dir())
    out.update(
        {
            "load": summarise(result),
            "rebuild_s": round(published - rebuild_started, 2),
            "generation": generation,
            "workers_loaded": len(loaded_wall),
            "load_after_publish_s": [round(t - published, 2) for t in loaded_at],
            "before": summary_ms(before),
            "during_rebuild": summary_ms(rebuilding),
            "while_loading": summary_ms(loading),
            "after": summary_ms(after),
            "answered_while_loading": len(loading),
            "errors": len(samples) - result.ok,
            "longest_gap_s": round(max(gaps, default=0.0), 3),
            "served_generation": manifest.generation if manifest else None,
        }
    )
    # One response takes p50_before when nothing else happens; a longer silence while the new
    # generation loads would be a pause in answering.
    out["gap_vs_p50_before"] = round(out["longest_gap_s"] * 1000 / max(1e-9, out["before"]["p50_ms"]), 3)
    return out
