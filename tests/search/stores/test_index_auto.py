"""IMAGESEARCH_INDEX_KIND=auto: exact flat up to a size, a tuned approximate index above it, and
the recall it records is measured against exact results."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from imagesearch import settings as product_settings
from search import status
from search.ingest import pipeline, rebuild
from search.stores import faiss as search_index
from search.stores import faiss_store
from search.stores.faiss import tuning
from tests.factories import create_images, create_indexed_images

DIM = 32


def _unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _exact_ids(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ vectors.T
    return ids[np.argsort(-scores, axis=1, kind="stable")[:, :k]]


def _library(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.arange(100, 100 + n, dtype=np.int64) * 3, _unit(rng, n)


def test_auto_writes_the_exact_flat_index_up_to_the_threshold_and_its_results_are_exact(tmp_path):
    ids, vectors = _library(2000)
    manifest = search_index.write_generation(
        tmp_path, ids, vectors, model="m", image_weight=0.5, kind="auto", flat_max_vectors=2000
    )
    assert (manifest.requested_kind, manifest.kind, manifest.exact) == ("auto", "flat", True)
    assert manifest.param is None and manifest.recall_text is None

    queries = _unit(np.random.default_rng(5), 20)
    reader = search_index.IndexReader(tmp_path)
    _, found = reader.search(queries, 10)
    assert (found == _exact_ids(ids, vectors, queries, 10)).all()


def test_auto_writes_a_tuned_ivf_index_above_a_lowered_threshold(tmp_path):
    ids, vectors = _library(2000)
    manifest = search_index.write_generation(
        tmp_path, ids, vectors, model="m", image_weight=0.5, kind="auto", flat_max_vectors=1999
    )
    assert (manifest.requested_kind, manifest.kind, manifest.exact) == ("auto", "ivf", False)
    assert manifest.param == "nprobe" and 1 <= manifest.param_value <= tuning_lists(2000)
    assert manifest.recall_image >= search_index.RECALL_TARGET
    # The reader serves the generation with the tuned value, not the kind's fixed default.
    reader = search_index.IndexReader(tmp_path)
    reader.refresh()
    assert faiss.extract_index_ivf(reader._state.index).nprobe == manifest.param_value


def tuning_lists(n: int) -> int:
    from search.stores.faiss import kinds

    return kinds.ivf_lists(n)


def test_recorded_recall_equals_an_independent_computation_with_the_recorded_parameter(tmp_path):
    # Unclustered vectors: an IVF index needs many lists probed to find their neighbours.
    ids, vectors = _library(3000, seed=1)
    rng = np.random.default_rng(2)
    text = _unit(rng, 60)
    images = _unit(rng, 50)
    manifest = search_index.write_generation(
        tmp_path,
        ids,
        vectors,
        model="m",
        image_weight=0.5,
        kind="ivf",
        text_queries=text,
        image_queries=images,
    )
    assert (manifest.recall_text_queries, manifest.recall_image_queries) == (60, 50)

    index = faiss.read_index(str(tmp_path / manifest.index_file))

    def recall(queries: np.ndarray, nprobe: int) -> float:
        index.nprobe = nprobe
        found = index.search(queries, 10)[1]
        exact = _exact_ids(ids, vectors, queries, 10)
        return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)]))

    value = manifest.param_value
    assert manifest.recall_text == pytest.approx(recall(text, value), abs=1e-4)
    assert manifest.recall_image == pytest.approx(recall(images, value), abs=1e-4)
    assert min(manifest.recall_text, manifest.recall_image) >= search_index.RECALL_TARGET
    # The smallest value that reaches the tuning's aim (the target and a margin for the queries
    # outside the sample): one list fewer falls short of it.
    aim = tuning.RECALL_TARGET + tuning.TUNING_MARGIN
    assert value > 1 and min(manifest.recall_text, manifest.recall_image) >= aim
    assert min(recall(text, value - 1), recall(images, value - 1)) < aim


def test_recorded_recall_changes_with_the_queries_it_is_measured_on(tmp_path):
    ids, vectors = _library(3000, seed=1)
    rng = np.random.default_rng(3)
    near = vectors[rng.choice(len(vectors), 40, replace=False)]  # stored vectors: found at once
    far = _unit(rng, 40)
    easy = search_index.write_generation(
        tmp_path / "a", ids, vectors, model="m", image_weight=0.5, kind="ivf", image_queries=near
    )
    hard = search_index.write_generation(
        tmp_path / "b", ids, vectors, model="m", image_weight=0.5, kind="ivf", image_queries=far
    )
    assert easy.param_value < hard.param_value


def test_tuning_measures_both_sorts_of_queries_and_targets_the_worse(tmp_path):
    ids, vectors = _library(3000, seed=1)
    rng = np.random.default_rng(4)
    near = vectors[rng.choice(len(vectors), 40, replace=False)]
    far = _unit(rng, 40)
    manifest = search_index.write_generation(
        tmp_path, ids, vectors, model="m", image_weight=0.5, kind="ivf", text_queries=far, image_queries=near
    )
    alone = search_index.write_generation(
        tmp_path / "far", ids, vectors, model="m", image_weight=0.5, kind="ivf", image_queries=far
    )
    assert manifest.param_value == alone.param_value
    assert manifest.recall_text >= search_index.RECALL_TARGET


def test_auto_is_the_default_and_switches_kind_at_the_index_packages_measured_threshold():
    assert product_settings.IMAGESEARCH_INDEX_KIND == "auto"
    assert tuning.kind_for("auto", search_index.AUTO_FLAT_MAX_VECTORS) == "flat"
    assert tuning.kind_for("auto", search_index.AUTO_FLAT_MAX_VECTORS + 1) == "ivf"
    assert tuning.kind_for("hnsw", 1) == "hnsw"


@pytest.mark.django_db
def test_a_rebuild_with_auto_tunes_on_the_labels_text_vectors_and_the_status_shows_it(
    settings, monkeypatch, staff_client
):
    settings.IMAGESEARCH_INDEX_KIND = "auto"
    monkeypatch.setattr(search_index, "AUTO_FLAT_MAX_VECTORS", 3)
    labels = ["sunset", "zebra", "bicycle", "harbour", "forest"]
    ids = create_images([(i, [labels[i % 5]]) for i in range(1, 11)])
    pipeline.images_embed(image_ids=ids)
    rebuild.index_rebuild()

    manifest = search_index.read_current_manifest(faiss_store.index_dir())
    assert (manifest.requested_kind, manifest.kind) == ("auto", "ivf")
    assert manifest.recall_text_queries == 5  # one text query per label
    assert manifest.recall_image_queries == 10
    assert not status.index_behind()

    data = staff_client.get("/api/status").json()
    assert (data["kind"], data["requested_kind"], data["search_param"]) == ("ivf", "auto", "nprobe")
    assert data["search_param_value"] == manifest.param_value
    assert (data["recall_text"], data["recall_image"]) == (manifest.recall_text, manifest.recall_image)
    html = staff_client.get("/admin/search/indexstate/status/").content.decode()
    assert f"ivf (chosen by auto), nprobe {manifest.param_value}" in html
    assert f"text queries {manifest.recall_text}" in html


@pytest.mark.django_db
def test_a_small_library_under_auto_is_flat_and_shown_as_exact(settings, staff_client):
    settings.IMAGESEARCH_INDEX_KIND = "auto"
    create_indexed_images([(1, ["sunset"]), (2, ["zebra"])])
    data = staff_client.get("/api/status").json()
    assert (data["kind"], data["requested_kind"], data["recall_text"]) == ("flat", "auto", None)
    html = staff_client.get("/admin/search/indexstate/status/").content.decode()
    assert '<td id="recall">exact</td>' in html
