"""Web processes share the model and the index: gunicorn loads both in its master, before it
forks the workers, and a generation loaded before a fork keeps serving in the child."""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

from search.stores import faiss as search_index
from search.stores.faiss import flat_scan
from tests.conftest import web_server_env
from tests.factories import create_indexed_images
from tests.support.processes import Gunicorn
from tests.support.waiting import wait_for


def _in_child(fn) -> object:
    """``fn()`` run in a forked child; its result, pickled back through a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, pickle.dumps(fn()))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)


def test_a_generation_loaded_before_a_fork_serves_exact_results_in_the_child(tmp_path):
    # Enough rows for the flat scan to split across threads, which the child must start itself.
    n = flat_scan.SCAN_MIN_ROWS_PER_THREAD * 2 + 10
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 16), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64) + 7
    search_index.write_generation(tmp_path, ids, vectors, model="m", image_weight=0.5)
    reader = search_index.get_reader(tmp_path)
    reader.refresh()
    query = vectors[123] + 0.1 * vectors[456]
    expected = ids[np.argsort(-(vectors @ query), kind="stable")[:10]]

    def child():
        kept = search_index.get_reader(tmp_path)
        return kept is reader, kept.search(query, 10)[1][0].tolist()

    same_reader, found = _in_child(child)
    assert same_reader
    assert found == expected.tolist()
    search_index.reset_readers()


@pytest.mark.worker  # media and index where the server's processes look: the data directory
@pytest.mark.django_db(transaction=True)
def test_gunicorn_loads_the_model_and_index_in_its_master_and_the_workers_answer(clip_model_dir, tmp_path):
    create_indexed_images([(1, ["zebra"]), (2, ["harbour"]), (3, ["zebra"])])
    env = web_server_env(clip_model_dir, IMAGESEARCH_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    server = Gunicorn(workers=2, threads=2, log_path=tmp_path / "gunicorn.log", env=env).start()
    try:
        server.wait_answering("/?" + urlencode({"q": "zebra"}), timeout=180)
        master_maps = open(f"/proc/{server.proc.pid}/maps").read()
        # The first worker may answer before the master has forked the second.
        workers = wait_for(
            lambda: len(server.worker_pids()) >= 2 and server.worker_pids(), what="both workers"
        )
        for _ in range(6):  # reaches both workers
            assert server.answers("/?" + urlencode({"q": "zebra"}))
    finally:
        server.stop()
    log = (tmp_path / "gunicorn.log").read_text()
    assert "onnxruntime" in master_maps  # the model was loaded before forking
    assert ".faiss" in master_maps  # and the index mapped
    assert len(workers) == 2
    # The master loaded the generation once; no worker loaded it again.
    assert len(re.findall(r"search index generation \d+ loaded", log)) == 1


# How long a stop may take before it counts as hung: far beyond a graceful stop (a second or two),
# short of gunicorn's graceful timeout (30 s), after which it kills the workers itself.
STOP_BOUND = 25


@pytest.mark.worker  # media and index where the server's processes look: the data directory
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "sig",
    [signal.SIGTERM, signal.SIGINT],
    ids=["SIGTERM, as ./run stops it", "SIGINT, Ctrl-C of gunicorn alone"],
)
def test_gunicorn_with_the_model_loaded_in_its_master_stops_its_workers_gracefully(
    clip_model_dir, tmp_path, sig
):
    # The master imports onnxruntime (a native thread of its own) and forks: a worker that then
    # left through the interpreter's exit hung in ONNX Runtime's destructors or aborted, until
    # gunicorn (SIGINT: after 2 s) or ./run (after 10 s) killed it.
    create_indexed_images([(1, ["zebra"]), (2, ["harbour"])])
    env = web_server_env(clip_model_dir, IMAGESEARCH_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    server = Gunicorn(workers=2, threads=2, log_path=tmp_path / "gunicorn.log", env=env).start()
    try:
        server.wait_answering("/?" + urlencode({"q": "zebra"}), timeout=180)
        wait_for(lambda: len(server.worker_pids()) >= 2, what="both workers")
        for _ in range(6):  # both workers have encoded a query
            assert server.answers("/api/search?" + urlencode({"text": "zebra"}))
        assert "onnxruntime" in open(f"/proc/{server.proc.pid}/maps").read()
        os.killpg(server.proc.pid, sig)  # the master and its workers, as a terminal's Ctrl-C
        try:
            status = server.proc.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_BOUND} s after {sig.name}:\n{_where_stuck(server)}")
    finally:
        server.stop()
    log = (tmp_path / "gunicorn.log").read_text()
    assert status == 0, log[-3000:]
    assert log.count("Worker exiting") == 2, log[-3000:]
    # Neither killed nor aborted (gunicorn logs "Worker (pid:N) was sent SIGKILL!", "... SIGABRT!"),
    # nor left with an error status ("Worker (pid:N) exited with code N").
    assert not re.search(r"Worker \(pid:\d+\) (was sent|exited with code)", log), log[-3000:]
    assert "terminate called" not in log, log[-3000:]
    assert "Shutting down: Master" in log


def _where_stuck(server: Gunicorn) -> str:
    """What a server that did not stop was doing: each of its processes' threads and the kernel
    function each waits in (``wchan``), then the end of its log."""
    lines = []
    for pid in [server.proc.pid, *server.worker_pids()]:
        for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
            try:
                name = (task / "comm").read_text().strip()
                wchan = (task / "wchan").read_text().strip()
            except OSError:  # gone meanwhile
                continue
            lines.append(f"pid {pid} thread {task.name} ({name}): {wchan}")
    return "\n".join(lines) + "\n" + server.log_tail()
