"""Faults of the index files, seen from the service and the pages: a damaged, truncated or
mismatched generation is detected (checksum, size, manifest), reported on the admin status
page and never served; a writer killed or failing half-way never leaves a partial file that a
reader could load; a model change is detected, stale vectors are re-embedded, and vectors of
two dimensions never meet in one index. A rebuild from the database restores each case.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from html import unescape as html_unescape
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from django.conf import settings

from gallery.models import Image
from search import encoder, status
from search.ingest import actions, pipeline, rebuild
from search.models import IndexState
from search.stores import faiss as search_index
from search.stores import faiss_nearest, faiss_store
from search.stores import rows as store_rows
from tests.conftest import web_server_env
from tests.factories import create_indexed_images
from tests.support.clip_model import build_clip_model
from tests.support.constants import ROOT
from tests.support.processes import Gunicorn
from tests.support.waiting import wait_for

pytestmark = pytest.mark.django_db

STATUS = "/admin/search/indexstate/status/"


def _reader() -> search_index.IndexReader:
    """This process's reader, as the search page uses it."""
    return search_index.get_reader(settings.INDEX_DIR, expected_model=encoder.model_name())


def _paths(generation: int) -> tuple[Path, Path]:
    directory = Path(settings.INDEX_DIR)
    return directory / f"gen-{generation:06d}.faiss", directory / f"gen-{generation:06d}.json"


def _damage(generation: int, how: str) -> None:
    index_file, manifest_file = _paths(generation)
    if how == "bytes flipped":
        data = bytearray(index_file.read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 16):
            data[i] ^= 0xFF
        index_file.write_bytes(bytes(data))
    elif how == "file cut short":
        data = index_file.read_bytes()
        index_file.write_bytes(data[: len(data) // 2])
    elif how == "manifest missing":
        manifest_file.unlink()
    else:
        manifest = json.loads(manifest_file.read_text())
        if how == "manifest of another model":
            manifest["model"] = "some-other-clip"
        elif how == "manifest of another dimension":
            manifest["dim"] = manifest["dim"] * 2
        manifest_file.write_text(json.dumps(manifest))


def _search_page(client, words: str = "sunset"):
    return client.get("/", {"q": words})


def _status_problem(client) -> str:
    html = client.get(STATUS).content.decode()
    start = html.index('id="index-error">') + len('id="index-error">')
    return html_unescape(html[start : html.index("</td>", start)].strip())


@pytest.mark.parametrize(
    "how",
    [
        "bytes flipped",
        "file cut short",
        "manifest missing",
        "manifest of another model",
        "manifest of another dimension",
    ],
)
def test_a_damaged_generation_is_reported_never_served_and_a_rebuild_restores(how, library, staff_client):
    ids = library["all"]
    served = _search_page(staff_client).context["page"]
    assert {hit.image.pk for hit in served.hits} == set(ids)

    # The next generation is damaged on disk before any reader loads it.
    damaged = rebuild.index_rebuild().generation
    _damage(damaged, how)
    _reader().refresh()
    requested = IndexState.get().requested

    # A process that serves the previous generation keeps serving it, says so, and asks for a
    # rebuild at once (not at the next sweep).
    page = _search_page(staff_client)
    assert page.status_code == 200
    assert IndexState.get().requested == requested + 1
    assert page.context["page"].generation == served.generation != damaged
    assert [h.image.pk for h in page.context["page"].hits] == [h.image.pk for h in served.hits]
    assert any("could not be loaded" in notice for notice in page.context["page"].notices)
    assert f"generation {damaged}" in _status_problem(staff_client)

    # A process started now never serves the damaged file, and search never goes unavailable:
    # it serves the newest intact earlier generation (kept on disk for this), asks for a
    # rebuild at once, and says so.
    search_index.reset_readers()
    faiss_store._repairs_requested.clear()  # what a new process starts with
    requested = IndexState.get().requested
    page = _search_page(staff_client)
    assert page.status_code == 200
    assert page.context["page"].generation == served.generation
    assert [h.image.pk for h in page.context["page"].hits] == [h.image.pk for h in served.hits]
    assert any("could not be loaded" in notice for notice in page.context["page"].notices)
    assert IndexState.get().requested == requested + 1  # the rebuild, without waiting for the sweep
    assert f"generation {damaged}" in _status_problem(staff_client)
    assert status.index_behind()

    # With no intact generation at all, it answers exactly from the hybrids in the database.
    for path in Path(settings.INDEX_DIR).glob(f"gen-{served.generation:06d}.*"):
        path.unlink()
    search_index.reset_readers()
    page = _search_page(staff_client)
    assert page.status_code == 200
    assert page.context["page"].generation is None
    assert [h.image.pk for h in page.context["page"].hits] == [h.image.pk for h in served.hits]
    assert faiss_nearest.FROM_ROWS_NOTICE in page.context["page"].notices

    restored = rebuild.index_rebuild().generation
    _reader().refresh()
    page = _search_page(staff_client)
    assert page.status_code == 200
    assert page.context["page"].generation == restored
    assert {hit.image.pk for hit in page.context["page"].hits} == set(ids)
    assert not any("could not be loaded" in notice for notice in page.context["page"].notices)
    assert 'id="index-error-row" hidden' in staff_client.get(STATUS).content.decode()


@pytest.mark.worker  # media and index where the server's processes look: the data directory
@pytest.mark.django_db(transaction=True)
def test_a_web_server_started_on_a_damaged_generation_never_answers_503(clip_model_dir, tmp_path):
    # A real fresh process: gunicorn as ./run starts it, on an index whose current generation
    # was damaged on disk before the server started; an intact earlier one is kept beside it.
    create_indexed_images([(1, ["zebra"]), (2, ["harbour"]), (3, ["zebra"])])
    damaged = rebuild.index_rebuild().generation
    _damage(damaged, "bytes flipped")
    requested = IndexState.get().requested
    env = web_server_env(clip_model_dir)
    server = Gunicorn(workers=2, threads=2, log_path=tmp_path / "gunicorn.log", env=env).start()
    statuses: list[int] = []
    try:
        # Every answer from the first one on: none may be a 503 while the rows hold the vectors.
        def answered_with_results() -> bool:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            try:
                conn.request("GET", "/?" + urlencode({"q": "zebra"}))
                response = conn.getresponse()
                body = response.read().decode()
            except (OSError, http.client.HTTPException):
                return False  # not listening yet
            finally:
                conn.close()
            statuses.append(response.status)
            return (
                response.status == 200
                and 'class="card"' in body
                and "could not be loaded" in html_unescape(body)
            )

        wait_for(
            answered_with_results, timeout=180, what="the fresh server answering from the earlier generation"
        )
        for _ in range(6):  # reaches both workers
            assert answered_with_results()
    finally:
        server.stop()
    assert statuses and set(statuses) == {200}, statuses
    # It asked for a rebuild itself, at once, not at the next sweep.
    assert IndexState.get().requested > requested


# A writer process: one complete generation, then the next one stopped at a given step of its
# publication, where it says so on stdout and waits to be killed (SIGKILL, as an OOM kill or a
# power cut does it). Each step is where a kill leaves a different state on disk; the parent
# waits for the writer to get there instead of guessing when it is.
_WRITER = textwrap.dedent(
    """
    import dataclasses, signal, sys
    import numpy as np
    from search.stores import faiss as index
    from search.stores.faiss import files, kinds
    directory, model, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    vectors = np.random.default_rng(0).standard_normal((2000, 64), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(10**9, 10**9 + len(vectors))  # no row has these ids
    index.write_generation(directory, ids, vectors, model=model, image_weight=0.5)

    def stopped():
        print("stopped", flush=True)
        while True:
            signal.pause()

    def cut_short(faiss, path, ids, vectors):
        write(faiss, path, ids, vectors)
        with open(path, "r+b") as f:  # what a kill half-way through writing it leaves
            f.truncate(path.stat().st_size // 2)
        stopped()

    def before_manifest(directory, name, data):
        if name.endswith(".json"):
            stopped()
        publish_bytes(directory, name, data)

    write, publish_bytes = kinds.KINDS["flat"].write, files.publish_bytes
    if stop == "in the middle of the index file":
        kinds.KINDS["flat"] = dataclasses.replace(kinds.KINDS["flat"], write=cut_short)
    elif stop == "before its manifest":
        files.publish_bytes = before_manifest
    elif stop == "before CURRENT moves":
        files.publish_pointer = lambda directory, generation: stopped()
    index.write_generation(directory, ids, vectors, model=model, image_weight=0.5)
    print("not stopped", flush=True)
    """
)


# Where the writer stops -> what it leaves of the generation it was writing.
_LEFT_AT = {
    "in the middle of the index file": {".tmp-gen-{n}.faiss"},
    "before its manifest": {"gen-{n}.faiss"},
    "before CURRENT moves": {"gen-{n}.faiss", "gen-{n}.json"},
}


def _debris(directory: Path, generation: int) -> set[str]:
    """The files of ``generation`` and every temporary file (without its random suffix)."""
    names = set()
    for path in directory.iterdir():
        if path.name.startswith(".tmp-"):
            names.add(path.name.rsplit(".", 1)[0])
        elif path.name.startswith(f"gen-{generation:06d}."):
            names.add(path.name)
    return names


@pytest.mark.parametrize("stop", list(_LEFT_AT))
def test_a_writer_killed_mid_write_leaves_the_last_complete_generation_and_the_next_rebuild_works(
    stop, library, staff_client
):
    ids = library["all"]
    directory = Path(settings.INDEX_DIR)
    complete = search_index.read_current_manifest(directory).generation + 1  # the writer's first
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(directory), encoder.model_name(), stop],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = writer.stdout.readline().strip()  # blocks until it has stopped (or exited)
        if said != "stopped":
            writer.wait(30)
            pytest.fail(f"the writer did not stop {stop}: {said!r} {writer.stderr.read()[-2000:]}")
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(30)
    assert search_index.read_current_manifest(directory).generation == complete
    killed = complete + 1
    assert _debris(directory, killed) == {name.format(n=f"{killed:06d}") for name in _LEFT_AT[stop]}

    # Whatever CURRENT names is complete and verifiable: a reader loads it without error.
    search_index.reset_readers()
    reader = _reader()
    reader.refresh()
    assert reader.last_error is None
    assert (reader.manifest.generation, reader.manifest.count) == (complete, 2000)

    # The lock died with the writer: the next rebuild runs, restores the library, and clears
    # the debris.
    report = rebuild.index_rebuild()
    assert report.built and report.count == len(ids)
    # Left: the new generation (with its picture index) and the one current before it (kept for
    # readers; written without one), nothing else.
    kept = {f"gen-{n:06d}.{ext}" for n in (complete, report.generation) for ext in ("faiss", "json")}
    kept.add(f"gen-{report.generation:06d}-picture.faiss")
    assert {p.name for p in directory.iterdir()} == kept | {"CURRENT", "LOCK"}
    reader.refresh()
    page = _search_page(staff_client)
    assert {hit.image.pk for hit in page.context["page"].hits} == set(ids)


# A rebuild that fails half-way through writing its file (the file-size limit stands in for a
# full disk: the write fails with EFBIG after the first 4 KiB).
_FAILING_WRITER = textwrap.dedent(
    """
    import resource, signal, sys
    import numpy as np
    from search.stores import faiss as index
    directory, model, vectors_file = sys.argv[1], sys.argv[2], sys.argv[3]
    vectors = np.load(vectors_file)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
    try:
        index.write_generation(directory, np.arange(len(vectors)) + 10**9, vectors, model=model,
                               image_weight=0.5)
    except Exception as exc:
        print(type(exc).__name__, exc)
        sys.exit(3)
    """
)


def test_a_rebuild_failing_half_way_through_its_file_changes_nothing_served(library, staff_client, tmp_path):
    ids = library["all"]
    served = _search_page(staff_client).context["page"].generation
    directory = Path(settings.INDEX_DIR)
    before = sorted(p.name for p in directory.iterdir())
    vectors = np.random.default_rng(1).standard_normal((2000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(tmp_path / "vectors.npy", vectors)

    failed = subprocess.run(
        [
            sys.executable,
            "-c",
            _FAILING_WRITER,
            str(directory),
            encoder.model_name(),
            str(tmp_path / "vectors.npy"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert sorted(p.name for p in directory.iterdir()) == before  # not even a temporary file

    _reader().refresh()
    page = _search_page(staff_client)
    assert page.context["page"].generation == served
    assert {hit.image.pk for hit in page.context["page"].hits} == set(ids)
    assert rebuild.index_rebuild().built


def test_a_stored_vector_of_another_size_makes_the_rebuild_refuse_and_the_old_generation_serves(
    library, staff_client
):
    ids = library["all"]
    served = _search_page(staff_client).context["page"].generation
    # A row that claims the current model with a vector of another dimension (a model directory
    # replaced in place, a bad restore): one index cannot hold both sizes.
    Image.objects.filter(pk=ids[0]).update(hybrid_vector=encoder.to_bytes(np.ones(32, np.float32) / 32**0.5))
    with pytest.raises(store_rows.VectorSizesDiffer, match="different sizes"):
        rebuild.index_rebuild()
    _reader().refresh()
    assert search_index.read_current_manifest(settings.INDEX_DIR).generation == served
    page = _search_page(staff_client)
    assert page.context["page"].generation == served

    # Re-embedding the row (what "Re-embed" does) repairs it and the rebuild goes through.
    actions.images_reembed(image_ids=[ids[0]])
    pipeline.images_embed(image_ids=[ids[0]])
    report = rebuild.index_rebuild()
    assert report.built and report.count == len(ids)


def test_a_model_change_is_detected_and_embed_missing_reembeds_only_the_stale_vectors(
    library, staff_client, settings, monkeypatch
):
    ids = library["all"]
    old_model = encoder.model_name()
    new_model = build_clip_model(Path(settings.DATA_DIR) / "models" / "tiny-clip-seed1", size="tiny", seed=1)

    # The next run starts with another model.
    settings.IMAGESEARCH_CLIP_MODEL = str(new_model)
    assert Image.objects.stale(str(new_model)).count() == len(ids)
    assert status.index_behind()
    page = _search_page(staff_client)
    assert page.status_code == 503  # the index of the old model is never served with the new one
    assert f"built with model {old_model!r}" in _status_problem(staff_client)

    # The reindex re-embeds exactly the stale rows (as the worker would, batch by batch).
    calls: list[int] = []
    original = encoder.encode_images
    monkeypatch.setattr(
        encoder, "encode_images", lambda images, **kw: calls.append(len(images)) or original(images, **kw)
    )
    assert actions.images_embed_missing()["reembed"] == len(ids)
    pipeline.images_embed(image_ids=ids[:2])
    rebuild.index_rebuild()
    # Half-way: only rows of the new model are indexed, never a mix of the two.
    manifest = search_index.read_current_manifest(settings.INDEX_DIR)
    assert (manifest.model, manifest.count) == (str(new_model), 2)

    pipeline.images_embed(image_ids=ids)
    assert sum(calls) == len(ids)  # each stale image once, the re-embedded ones not again
    rebuild.index_rebuild()
    _reader().refresh()
    assert Image.objects.stale(str(new_model)).count() == 0
    assert not Image.objects.filter(embedding_model=old_model).exists()
    page = _search_page(staff_client)
    assert page.status_code == 200
    assert {hit.image.pk for hit in page.context["page"].hits} == set(ids)


def test_concurrent_first_searches_of_a_fresh_process_wait_for_the_index_instead_of_failing(tmp_path):
    # Large enough that verifying and loading it takes a while (checksum of ~50 MB).
    vectors = np.random.default_rng(2).standard_normal((200_000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    search_index.write_generation(tmp_path, np.arange(len(vectors)), vectors, model="m", image_weight=0.5)
    reader = search_index.IndexReader(tmp_path, expected_model="m")
    barrier = threading.Barrier(8)
    served: list[object] = []

    def first_search() -> None:
        barrier.wait()
        served.append(reader.poll())

    threads = [threading.Thread(target=first_search) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [m is not None and m.count == 200_000 for m in served] == [True] * 8
