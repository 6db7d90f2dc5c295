"""Tests of search.stores.faiss: FAISS generations on disk. Plain pytest, no Django."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from search.stores import faiss as si
from search.stores.faiss import files as index_files
from search.stores.faiss.lock import LOCK_NAME
from tests.support.locks import flock_waiting
from tests.support.waiting import wait_for

MODEL = "clip-test"
DIM = 16


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def write(directory: Path, n: int = 50, *, seed: int = 0, model: str = MODEL, dim: int = DIM, **kw):
    ids = np.arange(n, dtype=np.int64) * 10 + 7
    vectors = unit_vectors(n, dim, seed)
    manifest = si.write_generation(directory, ids, vectors, model=model, image_weight=0.5, **kw)
    return ids, vectors, manifest


def reader(directory: Path, **kw) -> si.IndexReader:
    kw.setdefault("expected_model", MODEL)
    kw.setdefault("expected_dim", DIM)
    return si.IndexReader(directory, check_interval=0, background=False, **kw)


def brute_force(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int):
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


# --------------------------------------------------------------------------- search


def test_search_returns_exact_inner_product_top_k_like_numpy(tmp_path):
    ids, vectors, _ = write(tmp_path, n=500)
    queries = unit_vectors(20, seed=1)

    scores, found = reader(tmp_path).search(queries, 10)

    want_scores, want_ids = brute_force(ids, vectors, queries, 10)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    assert scores.shape == found.shape == (20, 10)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_single_query_row_is_accepted_as_one_query(tmp_path):
    ids, vectors, _ = write(tmp_path, n=30)
    q = unit_vectors(1, seed=3)[0]
    scores, found = reader(tmp_path).search(q, 3)
    assert found.shape == (1, 3)
    np.testing.assert_array_equal(found, brute_force(ids, vectors, q[None], 3)[1])


def test_fewer_vectors_than_k_pads_ids_with_minus_one_and_scores_with_minus_inf(tmp_path):
    ids, _, _ = write(tmp_path, n=3)
    scores, found = reader(tmp_path).search(unit_vectors(2, seed=5), 5)
    assert found.shape == (2, 5)
    assert (found[:, 3:] == -1).all()
    assert np.isneginf(scores[:, 3:]).all()
    assert set(found[0, :3]) == set(ids)
    assert np.isfinite(scores[:, :3]).all()


def test_empty_index_is_a_valid_generation_and_returns_only_padding(tmp_path):
    manifest = si.write_generation(
        tmp_path, np.empty(0, np.int64), np.empty((0, DIM), np.float32), model=MODEL, image_weight=0.5
    )
    assert manifest.count == 0 and manifest.dim == DIM

    r = reader(tmp_path)
    scores, found = r.search(unit_vectors(2), 4)
    assert (found == -1).all() and np.isneginf(scores).all()
    assert r.manifest == manifest and r.last_error is None


def test_query_of_wrong_dimension_or_bad_k_is_rejected(tmp_path):
    write(tmp_path)
    r = reader(tmp_path)
    with pytest.raises(ValueError):
        r.search(unit_vectors(1, dim=DIM + 1), 3)
    with pytest.raises(ValueError):
        r.search(unit_vectors(1), 0)
    with pytest.raises(ValueError):
        r.search(np.full((1, DIM), np.nan, np.float32), 3)


# --------------------------------------------------------------------------- writing


def test_write_leaves_no_temporary_files_and_publishes_manifest_and_pointer(tmp_path):
    _, _, manifest = write(tmp_path, n=40)

    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["CURRENT", "LOCK", "gen-000001.faiss", "gen-000001.json"]
    assert (tmp_path / "CURRENT").read_text() == "1\n"
    on_disk = json.loads((tmp_path / "gen-000001.json").read_text())
    assert on_disk["generation"] == 1 and on_disk["count"] == 40 and on_disk["dim"] == DIM
    assert on_disk["model"] == MODEL and on_disk["image_weight"] == 0.5 and on_disk["kind"] == "flat"
    assert on_disk["size_bytes"] == (tmp_path / "gen-000001.faiss").stat().st_size
    assert si.read_current_manifest(tmp_path) == manifest


def test_generations_count_up_and_only_the_previous_one_is_kept(tmp_path):
    for expected in range(1, 5):
        assert write(tmp_path, seed=expected)[2].generation == expected
    gens = sorted(p.name for p in tmp_path.glob("gen-*"))
    assert gens == ["gen-000003.faiss", "gen-000003.json", "gen-000004.faiss", "gen-000004.json"]


def test_write_keeps_the_generations_that_were_current_not_orphans(tmp_path):
    for seed in range(1, 4):
        write(tmp_path, seed=seed, keep_previous=2)
    manifest = write(tmp_path, seed=4, keep_previous=2)[2]
    assert manifest.previous_generation == 3
    assert sorted(p.name for p in tmp_path.glob("gen-*.faiss")) == [
        "gen-000002.faiss",
        "gen-000003.faiss",
        "gen-000004.faiss",
    ]
    write(tmp_path, seed=5, keep_previous=0)
    assert sorted(p.name for p in tmp_path.glob("gen-*")) == ["gen-000005.faiss", "gen-000005.json"]


def test_reader_keeps_serving_a_generation_whose_files_were_deleted_under_it(tmp_path):
    ids1, vectors1, _ = write(tmp_path, n=30, seed=1)
    r = si.IndexReader(tmp_path, check_interval=3600, background=False)
    r.search(vectors1[:1], 1)
    write(tmp_path, seed=2, keep_previous=0)  # deletes generation 1's files
    assert not (tmp_path / "gen-000001.faiss").exists()

    _, found = r.search(vectors1[:5], 1)  # still mapped: Linux keeps the inode alive

    np.testing.assert_array_equal(found[:, 0], ids1[:5])
    assert r.refresh() and r.manifest.generation == 2


def test_read_current_manifest_is_none_before_anything_is_written(tmp_path):
    assert si.read_current_manifest(tmp_path) is None


@pytest.mark.parametrize(
    "ids, vectors",
    [
        (np.arange(3), unit_vectors(3).astype(np.float64)),  # wrong dtype
        (np.arange(3), unit_vectors(3)[:, :, None]),  # wrong ndim
        (np.arange(4), unit_vectors(3)),  # ids do not match rows
        (np.arange(3).astype(np.float32), unit_vectors(3)),  # float ids
        (np.array([1, 1, 2]), unit_vectors(3)),  # duplicate ids
        (np.array([-1, 1, 2]), unit_vectors(3)),  # negative id
        (np.arange(3), unit_vectors(3) * 2),  # not unit norm
        (np.arange(3), np.where(np.eye(3, DIM, dtype=bool), np.nan, 0).astype(np.float32)),  # NaN
        (np.arange(3), np.where(np.eye(3, DIM, dtype=bool), np.inf, 0).astype(np.float32)),  # inf
    ],
)
def test_invalid_input_raises_value_error_and_writes_nothing(tmp_path, ids, vectors):
    with pytest.raises(ValueError):
        si.write_generation(tmp_path, ids, vectors, model=MODEL, image_weight=0.5)
    assert not list(tmp_path.glob("gen-*")) and not (tmp_path / "CURRENT").exists()


def test_unknown_kind_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        write(tmp_path, kind="nope")


def test_crash_before_the_pointer_moves_keeps_the_old_generation_and_is_cleaned_up_later(
    tmp_path, monkeypatch
):
    ids, vectors, first = write(tmp_path, seed=1)
    r = reader(tmp_path)
    r.search(unit_vectors(1), 1)

    real_publish = index_files.publish_bytes

    def crash_on_pointer(directory, name, data):
        if name == "CURRENT":
            # a stray temp file as if the process died mid-write
            (directory / ".tmp-CURRENT.deadbeef").write_bytes(b"9")
            raise OSError("simulated crash")
        return real_publish(directory, name, data)

    monkeypatch.setattr(index_files, "publish_bytes", crash_on_pointer)
    with pytest.raises(OSError):
        write(tmp_path, seed=2)
    monkeypatch.undo()

    assert si.read_current_manifest(tmp_path) == first
    np.testing.assert_array_equal(r.search(vectors[:1], 1)[1], ids[:1, None])  # still generation 1
    assert r.manifest.generation == 1 and r.last_error is None

    third = write(tmp_path, seed=3)[2]
    assert third.generation == 3  # never reuses the orphaned name
    assert not list(tmp_path.glob(".tmp-*"))
    assert sorted(p.name for p in tmp_path.glob("gen-*.faiss")) == ["gen-000001.faiss", "gen-000003.faiss"]


def test_readers_never_see_partial_generations_while_writer_publishes(tmp_path, monkeypatch):
    write(tmp_path, n=2000, seed=0)
    r = reader(tmp_path)
    counts = {1: 2000}
    served: list[int] = []

    def search_now() -> None:
        # A search at this very step of a publication answers from a complete generation.
        r.search(unit_vectors(1), 5)
        assert r.last_error is None, r.last_error
        assert r.manifest.count == counts[r.manifest.generation]
        served.append(r.manifest.generation)

    # Every step of a publication is an fsync or a rename: search before each, and after each
    # rename (a temporary file half-filled, a generation's file without its manifest, both
    # without CURRENT, CURRENT moved).
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        search_now()
        real_fsync(fd)

    def replace(src, dst) -> None:
        search_now()
        real_replace(src, dst)
        search_now()

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    for seed in range(1, 8):
        counts[seed + 1] = 2000 + seed
        write(tmp_path, n=2000 + seed, seed=seed)
    monkeypatch.undo()

    assert served == sorted(served)  # never back to an older generation
    assert set(served) == set(range(1, 9))  # each one served once CURRENT named it


# --------------------------------------------------------------------------- reloading


def test_existing_reader_picks_up_a_new_generation_without_restart(tmp_path):
    write(tmp_path, n=20, seed=1)
    r = reader(tmp_path)
    assert r.search(unit_vectors(1), 1)[1].shape == (1, 1)
    assert r.manifest.generation == 1

    ids2, vectors2, _ = write(tmp_path, n=30, seed=2)
    _, found = r.search(vectors2[:3], 1)

    assert r.manifest.generation == 2 and r.manifest.count == 30
    np.testing.assert_array_equal(found[:, 0], ids2[:3])


def test_background_reader_keeps_serving_while_it_loads_the_next_generation(tmp_path):
    ids1, vectors1, _ = write(tmp_path, n=20, seed=1)
    r = si.IndexReader(tmp_path, expected_model=MODEL, expected_dim=DIM, check_interval=0)
    r.search(vectors1[:1], 1)
    assert r.manifest.generation == 1

    ids2, vectors2, _ = write(tmp_path, n=20, seed=2)

    def serving_the_new_one() -> bool:
        r.search(vectors1[:1], 1)  # always answered, from generation 1 or 2
        return r.manifest.generation == 2

    wait_for(serving_the_new_one, interval=0.01, what="the background load of generation 2")
    np.testing.assert_array_equal(r.search(vectors2[:2], 1)[1][:, 0], ids2[:2])


def test_reader_checks_the_pointer_at_most_once_per_interval(tmp_path, monkeypatch):
    write(tmp_path, seed=1)
    r = si.IndexReader(tmp_path, check_interval=60, background=False)
    r.search(unit_vectors(1), 1)
    calls = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **k: calls.append(a) or real_stat(*a, **k))
    for _ in range(100):
        r.search(unit_vectors(1), 1)
    assert calls == []


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 8] = bytes(b ^ 0xFF for b in data[mid : mid + 8])
    # Damage in place on purpose, as a disk error would: keep the inode.
    with open(path, "r+b") as f:
        f.write(data)


def truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def drop_manifest(directory: Path, generation: int) -> None:
    (directory / f"gen-{generation:06d}.json").unlink()


def drop_index_file(directory: Path, generation: int) -> None:
    (directory / f"gen-{generation:06d}.faiss").unlink()


def edit_manifest(directory: Path, generation: int, **changes) -> None:
    path = directory / f"gen-{generation:06d}.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def write_then_break(directory: Path, how: str) -> None:
    """Publish generation 2 and damage it before any reader has looked at it."""
    write(directory, n=40, seed=2)
    if how == "flipped bytes":
        flip_bytes(directory / "gen-000002.faiss")
    elif how == "truncated":
        truncate(directory / "gen-000002.faiss")
    elif how == "missing manifest":
        drop_manifest(directory, 2)
    elif how == "missing index file":
        drop_index_file(directory, 2)
    elif how == "garbage manifest":
        (directory / "gen-000002.json").write_text("{not json")
    elif how == "garbage pointer":
        (directory / "CURRENT").write_text("banana\n")
    elif how == "manifest count lies":
        edit_manifest(directory, 2, count=41)
    else:
        raise AssertionError(how)


BREAKAGES = [
    "flipped bytes",
    "truncated",
    "missing manifest",
    "missing index file",
    "garbage manifest",
    "garbage pointer",
    "manifest count lies",
]


@pytest.mark.parametrize("how", BREAKAGES)
def test_broken_new_generation_is_never_served_and_the_old_one_keeps_serving(tmp_path, how):
    ids1, vectors1, _ = write(tmp_path, n=20, seed=1)
    r = reader(tmp_path)
    r.search(vectors1[:1], 1)

    write_then_break(tmp_path, how)
    _, found = r.search(vectors1[:3], 1)

    np.testing.assert_array_equal(found[:, 0], ids1[:3])
    assert r.manifest.generation == 1
    assert r.last_error
    assert r.status()["last_error"] == r.last_error and r.status()["generation"] == 1


@pytest.mark.parametrize("how", BREAKAGES)
def test_fresh_reader_serves_the_newest_intact_earlier_generation_and_reports_the_damaged_one(tmp_path, how):
    ids1, vectors1, _ = write(tmp_path, n=20, seed=1)
    write_then_break(tmp_path, how)
    r = reader(tmp_path)  # CURRENT names the damaged generation 2; generation 1 is kept on disk
    if how == "garbage pointer":  # CURRENT unreadable: generation 2 itself is the newest intact one
        r.search(unit_vectors(1), 1)
        assert r.manifest.generation == 2 and r.last_error
        return
    _, found = r.search(vectors1[:3], 1)
    np.testing.assert_array_equal(found[:, 0], ids1[:3])
    assert r.manifest.generation == 1
    assert r.failed_generation == 2 and "generation 2" in r.last_error


@pytest.mark.parametrize("how", BREAKAGES)
def test_fresh_reader_with_nothing_valid_raises_index_unavailable(tmp_path, how):
    write(tmp_path, n=20, seed=1)
    write_then_break(tmp_path, how)
    _drop_generation(tmp_path, 1)
    if how == "garbage pointer":
        _drop_generation(tmp_path, 2)
    r = reader(tmp_path)
    with pytest.raises(si.IndexUnavailable):
        r.search(unit_vectors(1), 1)
    assert r.manifest is None and r.last_error


def _drop_generation(directory: Path, generation: int) -> None:
    for path in directory.glob(f"gen-{generation:06d}.*"):
        path.unlink()


@pytest.mark.parametrize("expected", [{"expected_model": "another-model"}, {"expected_dim": DIM * 2}])
def test_generation_from_another_model_or_dimension_is_not_served(tmp_path, expected):
    write(tmp_path, n=20, seed=1)
    r = reader(tmp_path, **expected)
    with pytest.raises(si.IndexUnavailable, match="expected"):
        r.search(unit_vectors(1), 1)
    assert r.manifest is None and "expected" in r.last_error


def test_switch_to_another_model_keeps_old_generation_until_a_matching_one_arrives(tmp_path):
    ids1, vectors1, _ = write(tmp_path, n=20, seed=1)
    r = reader(tmp_path)
    r.search(vectors1[:1], 1)

    write(tmp_path, n=20, seed=2, model="other-model")
    r.search(vectors1[:1], 1)
    assert r.manifest.generation == 1 and "other-model" in r.last_error

    write(tmp_path, n=20, seed=3, dim=DIM * 2)
    r.search(vectors1[:1], 1)
    assert r.manifest.generation == 1 and "dimension" in r.last_error


def test_a_good_write_after_a_broken_one_restores_serving_and_clears_the_error(tmp_path):
    write(tmp_path, n=20, seed=1, keep_previous=0)
    write_then_break(tmp_path, "flipped bytes")
    _drop_generation(tmp_path, 1)
    r = reader(tmp_path)
    with pytest.raises(si.IndexUnavailable):
        r.search(unit_vectors(1), 1)

    ids3, vectors3, _ = write(tmp_path, n=25, seed=3)
    _, found = r.search(vectors3[:2], 1)

    np.testing.assert_array_equal(found[:, 0], ids3[:2])
    assert r.manifest.generation == 3 and r.last_error is None


def test_failed_generation_is_verified_once_not_on_every_query(tmp_path, monkeypatch):
    write(tmp_path, n=20, seed=1)
    r = reader(tmp_path)
    r.search(unit_vectors(1), 1)
    write_then_break(tmp_path, "flipped bytes")
    loads = []
    real_load = r._load
    monkeypatch.setattr(r, "_load", lambda g: loads.append(g) or real_load(g))
    for _ in range(5):
        r.search(unit_vectors(1), 1)
    assert loads == [2]


@pytest.mark.parametrize("how", ["garbage pointer", "garbage manifest", "missing manifest"])
def test_read_current_manifest_of_a_broken_generation_is_none_or_raises_when_strict(tmp_path, how):
    write(tmp_path, n=20, seed=1)
    write_then_break(tmp_path, how)
    assert si.read_current_manifest(tmp_path) is None
    with pytest.raises(si.InvalidGeneration):
        si.read_current_manifest(tmp_path, strict=True)


def test_poll_loads_the_first_generation_and_returns_its_manifest(tmp_path):
    r = si.IndexReader(tmp_path, expected_model=MODEL, check_interval=0)
    assert r.poll() is None
    _, _, manifest = write(tmp_path, n=12)
    assert r.poll() == manifest


def test_fresh_reader_before_anything_is_written_raises_index_unavailable(tmp_path):
    r = reader(tmp_path)
    with pytest.raises(si.IndexUnavailable, match="no index generation"):
        r.search(unit_vectors(1), 1)
    assert r.last_error is None and r.status()["generation"] is None


def test_status_reports_what_is_served(tmp_path):
    _, _, manifest = write(tmp_path, n=12)
    r = reader(tmp_path)
    r.search(unit_vectors(1), 1)
    status = r.status()
    assert status["generation"] == 1 and status["current_generation"] == 1
    assert status["count"] == 12 and status["dim"] == DIM and status["model"] == MODEL
    assert status["size_bytes"] == manifest.size_bytes and status["created_at"] == manifest.created_at
    assert status["last_error"] is None
    json.dumps(status)  # admin pages may serialise it


def test_get_reader_returns_one_reader_per_directory(tmp_path):
    a = si.get_reader(tmp_path, MODEL, DIM)
    assert si.get_reader(str(tmp_path), MODEL, DIM) is a
    assert si.get_reader(tmp_path / "other", MODEL, DIM) is not a
    si.reset_readers()
    assert si.get_reader(tmp_path, MODEL, DIM) is not a


# --------------------------------------------------------------------------- lock


_SPAWN = multiprocessing.get_context("spawn")


def _hold_lock(directory: str, acquired, release) -> None:
    with si.writer_lock(directory, blocking=True):
        acquired.set()
        release.wait(30)


@contextlib.contextmanager
def _lock_held_elsewhere(directory: Path) -> Iterator[tuple[Any, Any]]:
    """Another process holds the writer lock of ``directory`` until the (process, release event)
    pair's event is set, at the latest when the block ends."""
    acquired, release = _SPAWN.Event(), _SPAWN.Event()
    holder = _SPAWN.Process(target=_hold_lock, args=(str(directory), acquired, release))
    holder.start()
    try:
        assert acquired.wait(30)
        yield holder, release
    finally:
        # Setting the event after the holder was killed in its wait would block for ever: the
        # event's condition waits for the dead waiter to acknowledge.
        if holder.is_alive():
            release.set()
        holder.join(30)


def _try_lock(directory: str, queue) -> None:
    try:
        with si.writer_lock(directory, blocking=False):
            queue.put("acquired")
    except si.IndexLocked:
        queue.put("locked")


def test_writer_lock_is_exclusive_across_processes(tmp_path):
    with _lock_held_elsewhere(tmp_path) as (holder, _):
        with pytest.raises(si.IndexLocked):
            with si.writer_lock(tmp_path, blocking=False):
                pass
        queue = _SPAWN.Queue()
        other = _SPAWN.Process(target=_try_lock, args=(str(tmp_path), queue))
        other.start()
        assert queue.get(timeout=30) == "locked"
        other.join(30)
    assert holder.exitcode == 0
    with si.writer_lock(tmp_path, blocking=False):
        pass


def test_writer_lock_is_released_when_the_holder_dies(tmp_path):
    with _lock_held_elsewhere(tmp_path) as (holder, _):
        holder.kill()
        holder.join(30)
        with si.writer_lock(tmp_path, blocking=False):
            pass


def test_writer_lock_is_exclusive_between_threads_and_reentrant_in_one(tmp_path):
    with si.writer_lock(tmp_path, blocking=False):
        with si.writer_lock(tmp_path, blocking=False):  # same thread: re-entrant
            write(tmp_path)  # write_generation takes the lock itself
        outcome = []

        def other():
            try:
                with si.writer_lock(tmp_path, blocking=False):
                    outcome.append("acquired")
            except si.IndexLocked:
                outcome.append("locked")

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert outcome == ["locked"]
    with si.writer_lock(tmp_path, blocking=False):
        pass


def test_write_waits_for_a_writer_in_another_process(tmp_path):
    with _lock_held_elsewhere(tmp_path) as (_, release):
        done = threading.Event()
        t = threading.Thread(target=lambda: (write(tmp_path), done.set()))
        t.start()
        wait_for(lambda: flock_waiting(tmp_path / LOCK_NAME), interval=0.01, what="the write waiting")
        assert not done.is_set() and si.read_current_manifest(tmp_path) is None
        release.set()
        assert done.wait(30)
        t.join()
    assert si.read_current_manifest(tmp_path).generation == 1


# --------------------------------------------------------------------------- import cost


def test_importing_the_module_does_not_import_faiss_or_torch():
    repo = Path(__file__).resolve().parents[3]
    code = (
        "import sys, search.stores.faiss; "
        "bad = [m for m in ('faiss', 'torch', 'sentence_transformers', 'django') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
