"""Index kinds: the flat kind's numpy scan, and the opt-in approximate kinds (ivf, hnsw).

Plain pytest for search.stores.faiss, plus the services that pick the kind from the setting.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from search.stores import faiss as si
from search.stores.faiss import files as index_files
from search.stores.faiss import flat_scan, kinds

MODEL = "clip-test"
DIM = 16


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, *, clusters: int = 20, seed: int = 0) -> np.ndarray:
    """Tight clusters on the sphere: what real embeddings look like to an approximate index."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((clusters, DIM)))
    members = rng.integers(0, clusters, n)
    return unit(centres[members] + 0.15 * rng.standard_normal((n, DIM)))


def brute_force(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int):
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def write(directory, vectors: np.ndarray, kind: str):
    ids = np.arange(len(vectors), dtype=np.int64) * 3 + 5
    manifest = si.write_generation(directory, ids, vectors, model=MODEL, image_weight=0.5, kind=kind)
    return ids, manifest


def reader(directory) -> si.IndexReader:
    return si.IndexReader(
        directory, expected_model=MODEL, expected_dim=DIM, check_interval=0, background=False
    )


def recall_at_10(found: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(w)) / 10 for f, w in zip(found, want, strict=True)]))


@pytest.mark.parametrize("k", [1, 7, 300, 301, 1000])
def test_flat_single_query_scan_returns_the_exact_top_k_like_faiss(tmp_path, k):
    vectors = unit(np.random.default_rng(0).standard_normal((300, DIM)))
    ids, manifest = write(tmp_path, vectors, "flat")
    query = unit(np.random.default_rng(1).standard_normal((1, DIM)))

    scores, found = reader(tmp_path).search(query, k)

    kk = min(k, len(vectors))
    want_scores, want_ids = brute_force(ids, vectors, query, kk)
    np.testing.assert_array_equal(found[:, :kk], want_ids)
    np.testing.assert_allclose(scores[:, :kk], want_scores, rtol=1e-5, atol=1e-5)
    assert (found[:, kk:] == -1).all() and np.isneginf(scores[:, kk:]).all()
    import faiss

    _, faiss_ids = faiss.read_index(str(tmp_path / manifest.index_file)).search(query, kk)
    np.testing.assert_array_equal(found[:, :kk], faiss_ids)  # faiss's own scan agrees


def test_flat_single_queries_and_batches_give_the_same_results(tmp_path):
    vectors = unit(np.random.default_rng(2).standard_normal((500, DIM)))
    write(tmp_path, vectors, "flat")
    queries = unit(np.random.default_rng(3).standard_normal((flat_scan.ROW_SCAN_MAX_QUERIES + 3, DIM)))
    r = reader(tmp_path)

    batch_scores, batch_ids = r.search(queries, 10)  # more than the numpy path takes: faiss
    one_by_one = [r.search(q, 10) for q in queries]

    np.testing.assert_array_equal(batch_ids, np.vstack([ids for _, ids in one_by_one]))
    np.testing.assert_allclose(batch_scores, np.vstack([s for s, _ in one_by_one]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("n", "dim"), [(0, 16), (1, 3), (257, 16), (1000, 512)])
def test_flat_file_is_byte_for_byte_what_faiss_writes(tmp_path, n, dim):
    import faiss

    vectors = (
        unit(np.random.default_rng(n).standard_normal((n, dim))) if n else np.zeros((0, dim), np.float32)
    )
    ids = np.random.default_rng(n + 1).permutation(10 * n + 1)[:n].astype(np.int64)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if n:
        index.add_with_ids(vectors, ids)

    kinds._write_flat(faiss, tmp_path / "ours.faiss", ids, vectors)

    assert (tmp_path / "ours.faiss").read_bytes() == faiss.serialize_index(index).tobytes()


@pytest.mark.parametrize("k", [1, 10, 2000])
def test_flat_scan_split_across_threads_merges_to_the_exact_top_k(tmp_path, monkeypatch, k):
    monkeypatch.setattr(flat_scan, "SCAN_MIN_ROWS_PER_THREAD", 300)
    monkeypatch.setattr(flat_scan, "_scan_threads", lambda: 3)  # 2000 rows: 3 parts of ~667
    vectors = unit(np.random.default_rng(6).standard_normal((2000, DIM)))
    ids, _ = write(tmp_path, vectors, "flat")
    queries = unit(np.random.default_rng(7).standard_normal((2, DIM)))

    scores, found = reader(tmp_path).search(queries, k)

    want_scores, want_ids = brute_force(ids, vectors, queries, k)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("copy_max_bytes", [0, 1 << 30])
def test_flat_scan_from_the_mapping_or_a_private_copy_gives_the_same_results(
    tmp_path, monkeypatch, copy_max_bytes
):
    monkeypatch.setattr(flat_scan, "PRIVATE_COPY_MAX_BYTES", copy_max_bytes)
    vectors = unit(np.random.default_rng(8).standard_normal((700, DIM)))
    ids, _ = write(tmp_path, vectors, "flat")
    queries = unit(np.random.default_rng(9).standard_normal((3, DIM)))

    scores, found = reader(tmp_path).search(queries, 20)

    want_scores, want_ids = brute_force(ids, vectors, queries, 20)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def _scanned_array(r: si.IndexReader) -> np.ndarray:
    """The array the flat kind's numpy scan reads (from the search closure)."""
    search = r._state.search
    return inspect.getclosurevars(inspect.getclosurevars(search).nonlocals["scan_part"]).nonlocals["vectors"]


def _inside_mapping_of(array: np.ndarray, path) -> bool:
    address = array.__array_interface__["data"][0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith(str(path)):
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                if lo <= address < hi:
                    return True
    return False


@pytest.mark.parametrize(("copy_max_bytes", "shared"), [(1000, True), (1 << 30, False)])
def test_large_flat_index_is_scanned_from_the_shared_mapping_small_one_from_a_copy(
    tmp_path, monkeypatch, copy_max_bytes, shared
):
    monkeypatch.setattr(flat_scan, "PRIVATE_COPY_MAX_BYTES", copy_max_bytes)
    vectors = unit(np.random.default_rng(4).standard_normal((2000, DIM)))
    _, manifest = write(tmp_path, vectors, "flat")
    r = reader(tmp_path)
    r.search(vectors[:1], 3)

    scanned = _scanned_array(r)

    assert _inside_mapping_of(scanned, (tmp_path / manifest.index_file).resolve()) is shared
    np.testing.assert_array_equal(scanned, vectors)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kind_is_written_served_and_finds_the_exact_neighbours_of_near_queries(tmp_path, kind):
    vectors = clustered(4000)
    ids, manifest = write(tmp_path, vectors, kind)
    rng = np.random.default_rng(5)
    queries = unit(vectors[rng.integers(0, len(vectors), 50)] + 0.05 * rng.standard_normal((50, DIM)))

    r = reader(tmp_path)
    scores, found = r.search(queries, 10)

    assert manifest.kind == kind and r.status()["kind"] == kind and manifest.count == len(vectors)
    _, want = brute_force(ids, vectors, queries, 10)
    assert recall_at_10(found, want) >= 0.9
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    stored = vectors[123:124]
    assert r.search(stored, 1)[1][0, 0] == ids[123]


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kind_accepts_an_empty_library(tmp_path, kind):
    _, manifest = write(tmp_path, np.zeros((0, DIM), dtype=np.float32), kind)

    scores, found = reader(tmp_path).search(unit(np.ones((1, DIM))), 5)

    assert manifest.count == 0
    assert (found == -1).all() and np.isneginf(scores).all()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_reader_switches_between_kinds_as_generations_change(tmp_path, kind):
    vectors = clustered(600)
    write(tmp_path, vectors, "flat")
    r = reader(tmp_path)
    assert r.poll().kind == "flat"

    ids, _ = write(tmp_path, vectors[:300], kind)
    r.search(vectors[:1], 1)

    assert r.status()["kind"] == kind and r.manifest.count == 300
    assert r.search(vectors[7:8], 1)[1][0, 0] == ids[7]


def test_ivf_lists_are_memory_mapped_and_shared(tmp_path):
    vectors = clustered(3000)
    _, manifest = write(tmp_path, vectors, "ivf")
    r = reader(tmp_path)
    r.search(vectors[:1], 3)
    mapped = (tmp_path / manifest.index_file).resolve()
    with open("/proc/self/maps") as maps:
        assert any(line.rstrip().endswith(str(mapped)) and " r--s " in line for line in maps)


def test_a_generation_of_another_kind_is_checked_against_that_kind(tmp_path):
    vectors = clustered(200)
    _, manifest = write(tmp_path, vectors, "flat")
    # Claim the flat file is an IVF index: the reader must refuse it, not serve it.
    path = tmp_path / index_files.manifest_name(manifest.generation)
    path.write_text(path.read_text().replace('"kind": "flat"', '"kind": "ivf"'))

    r = reader(tmp_path)
    with pytest.raises(si.IndexUnavailable):
        r.search(vectors[:1], 1)
    assert "IndexIVFFlat" in (r.last_error or "")
