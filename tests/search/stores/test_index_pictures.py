"""A generation's picture index (the same rows' image vectors alone, beside the hybrid index):
written with the generation, verified before it is served, never needed for the hybrid search,
and absent from generations written before it existed. Plain pytest, no Django."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from search.stores import faiss as si
from search.stores.faiss import files as index_files
from tests.search.stores.test_index import DIM, MODEL, brute_force, flip_bytes, reader, truncate, unit_vectors


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 20 centres: an IVF's lists mean something."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_with_pictures(directory: Path, n: int = 60, *, kind: str = "flat", seed: int = 0, **kw):
    ids = np.arange(n, dtype=np.int64) * 10 + 7
    hybrids, pictures = clustered(n, seed), clustered(n, seed + 100)
    manifest = si.write_generation(
        directory,
        ids,
        hybrids,
        model=MODEL,
        image_weight=0.5,
        kind=kind,
        picture_vectors=(ids, pictures),
        **kw,
    )
    return ids, hybrids, pictures, manifest


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_the_picture_index_answers_nearest_by_image_vector_beside_the_hybrid_index(tmp_path, kind):
    ids, hybrids, pictures, manifest = write_with_pictures(tmp_path, n=400, kind=kind)
    assert manifest.picture is not None and manifest.picture.count == 400
    assert (
        tmp_path / index_files.picture_name(manifest.generation)
    ).stat().st_size == manifest.picture.size_bytes
    r = reader(tmp_path)
    queries = pictures[:5]
    _, picture_ids = r.search_pictures(queries, 10)
    _, exact_pictures = brute_force(ids, pictures, queries, 10)
    _, hybrid_ids = r.search(hybrids[:5], 10)
    _, exact_hybrids = brute_force(ids, hybrids, hybrids[:5], 10)
    # Each index ranks its own vectors (an approximate kind: mostly the exact top 10).
    found = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(picture_ids, exact_pictures, strict=True)])
    assert found >= (1.0 if kind == "flat" else 0.8)
    assert (picture_ids[:, 0] == exact_pictures[:, 0]).all()
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(hybrid_ids, exact_hybrids, strict=True)]) >= 0.8


def test_an_ivf_picture_index_takes_the_hybrid_index_lists_and_records_its_own_tuning(tmp_path):
    _, _, pictures, manifest = write_with_pictures(
        tmp_path, n=400, kind="ivf", image_queries=clustered(50, 100)
    )
    picture = manifest.picture
    assert picture.kind == "ivf" and picture.quantizer == "hybrid"
    assert picture.param == "nprobe" and picture.param_value >= 1
    assert picture.recall_image is not None
    hybrid_ivf = si.KINDS["ivf"]
    faiss = pytest.importorskip("faiss")
    hybrid = faiss.read_index(str(tmp_path / manifest.index_file))
    second = faiss.read_index(str(tmp_path / picture.file))
    assert hybrid_ivf.check(faiss, second) is None
    lists = faiss.extract_index_ivf(hybrid).quantizer.reconstruct_n(0, hybrid.nlist)
    assert np.array_equal(second.quantizer.reconstruct_n(0, second.nlist), lists)
    assert second.ntotal == len(pictures)


def test_a_widened_search_visits_more_lists_without_changing_the_shared_index(tmp_path):
    ids, hybrids, _, manifest = write_with_pictures(tmp_path, n=400, kind="ivf")
    r = reader(tmp_path)
    queries = clustered(20, 7)
    tuned = r.search(queries, 10)
    # Widened past every list: an IVF search visits all of them, which is the exact answer.
    scores, found = r.search(queries, 10, widen=10_000)
    exact_scores, exact = brute_force(ids, hybrids, queries, 10)
    assert np.array_equal(found, exact)
    assert np.allclose(scores, exact_scores, atol=1e-5)
    # The next plain search is the tuned one again.
    assert np.array_equal(r.search(queries, 10)[1], tuned[1])
    assert manifest.param_value < 20  # tuned below the number of lists, so widening meant something


@pytest.mark.parametrize("damage", [flip_bytes, truncate, Path.unlink])
def test_a_damaged_picture_index_costs_only_the_picture_search(tmp_path, damage):
    ids, hybrids, _, manifest = write_with_pictures(tmp_path)
    damage(tmp_path / manifest.picture.file)
    r = reader(tmp_path)
    queries = unit_vectors(3, seed=5)
    scores, found = r.search(queries, 5)
    assert np.array_equal(found, brute_force(ids, hybrids, queries, 5)[1])
    assert r.search_pictures(queries, 5) is None
    status = r.status()
    assert status["generation"] == manifest.generation and status["last_error"] is None
    assert "picture" in status["picture_error"] or manifest.picture.file in status["picture_error"]


def test_a_generation_written_without_pictures_serves_as_before(tmp_path):
    ids = np.arange(30, dtype=np.int64)
    vectors = unit_vectors(30)
    manifest = si.write_generation(tmp_path, ids, vectors, model=MODEL, image_weight=0.5)
    assert manifest.picture is None
    assert json.loads((tmp_path / "gen-000001.json").read_text())["picture"] is None
    r = reader(tmp_path)
    assert np.array_equal(r.search(vectors[:2], 3)[1], brute_force(ids, vectors, vectors[:2], 3)[1])
    assert r.search_pictures(vectors[:2], 3) is None
    assert r.status()["picture_error"] is None


def test_a_manifest_from_before_the_picture_index_reads_without_one(tmp_path):
    ids, _, _, manifest = write_with_pictures(tmp_path)
    path = tmp_path / index_files.manifest_name(manifest.generation)
    data = json.loads(path.read_text())
    del data["picture"]
    path.write_text(json.dumps(data))
    (tmp_path / manifest.picture.file).unlink()
    r = reader(tmp_path)
    assert r.poll().picture is None
    assert r.search_pictures(unit_vectors(1), 3) is None
    assert len(r.search(unit_vectors(1), 3)[1][0]) == 3


def test_old_picture_files_are_collected_with_their_generation(tmp_path):
    for seed in range(3):
        write_with_pictures(tmp_path, seed=seed)
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("gen-"))
    assert names == [
        "gen-000002-picture.faiss",
        "gen-000002.faiss",
        "gen-000002.json",
        "gen-000003-picture.faiss",
        "gen-000003.faiss",
        "gen-000003.json",
    ]


def test_picture_vectors_are_checked_like_the_hybrids(tmp_path):
    ids = np.arange(4, dtype=np.int64)
    with pytest.raises(ValueError, match="unit L2 norm"):
        si.write_generation(
            tmp_path,
            ids,
            unit_vectors(4),
            model=MODEL,
            image_weight=0.5,
            picture_vectors=(ids, unit_vectors(4) * 2),
        )
    with pytest.raises(ValueError, match="dimension"):
        si.write_generation(
            tmp_path,
            ids,
            unit_vectors(4),
            model=MODEL,
            image_weight=0.5,
            picture_vectors=(ids, unit_vectors(4, dim=DIM * 2)),
        )
    assert not list(tmp_path.glob("gen-*"))
