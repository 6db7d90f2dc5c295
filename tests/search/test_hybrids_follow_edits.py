"""Renaming a label, deleting a label and changing IMAGESEARCH_IMAGE_WEIGHT, each through the
admin as staff do it: the work is handed over after the commit, and the messages sent are then
run here as the worker runs them. The stored hybrids equal the formula (search.encoder.combine)
of the stored parts, the image model never runs again, and search follows."""

from __future__ import annotations

import numpy as np
import pytest
from celery import current_app
from django.conf import settings

from gallery.models import Image, Label
from search import dispatch, encoder, tasks
from search.query import ranking
from search.query import vectors as query_vectors
from search.stores import faiss as search_index
from tests.factories import create_indexed_images
from tests.support.images import image_bytes

# Committed, as in production: each admin request's hand-over runs at its commit.
pytestmark = pytest.mark.django_db(transaction=True)


def _deliver(sent: list[tuple[str, dict]]) -> list[str]:
    """Run every message sent (and those they send in turn) as the worker would, in order;
    the names of the tasks run."""
    ran = []
    while sent:
        name, options = sent.pop(0)
        task = current_app.tasks[name]
        assert task.__module__ == tasks.__name__
        task(*options.get("args", ()), **options.get("kwargs", {}))
        ran.append(name)
    return ran


def _hybrid(pk: int) -> np.ndarray:
    return encoder.from_bytes(Image.objects.get(pk=pk).hybrid_vector)


def _formula(pk: int, weight: float) -> np.ndarray:
    """The hybrid of the image's stored vector and its labels' stored vectors at ``weight``."""
    image = Image.objects.get(pk=pk)
    labels = [encoder.from_bytes(label.vector) for label in image.labels.all()]
    return encoder.combine(encoder.from_bytes(image.image_vector), labels, weight)


def _top(text: str, n: int) -> set[int]:
    page = ranking.images_search(vector=query_vectors.query_vector_for_text(text=text), page_size=n)
    return {hit.image.pk for hit in page.hits}


def _forbid_the_image_model(monkeypatch):
    """Fail if the image model runs; returns it, for a query image later."""
    model = encoder.encode_images
    monkeypatch.setattr(encoder, "encode_images", lambda *a, **k: pytest.fail("the image model ran"))
    return model


def test_a_renamed_label_ranks_its_images_first_for_the_new_name(sent, staff_client, monkeypatch):
    ids = create_indexed_images(
        [(1, ["sunset"]), (2, ["sunset"]), (3, ["bicycle"]), (4, ["zebra"]), (5, ["zebra"])]
    )
    zebras = ids[3:]
    sent.clear()  # the upload's own hand-over, done already
    _forbid_the_image_model(monkeypatch)
    before = {pk: _hybrid(pk) for pk in zebras}
    label = Label.objects.get(name="zebra")

    response = staff_client.post(f"/admin/gallery/label/{label.pk}/change/", {"name": "giraffe"})
    assert response.status_code == 302, response.content[:2000]
    # The rebuild asks for a near-duplicate scan in turn (the index changed).
    assert _deliver(sent) == [
        dispatch.REFRESH_TASK,
        dispatch.REBUILD_TASK,
        dispatch.LABELLING_TASK,
        dispatch.DUPLICATES_TASK,
    ]

    label.refresh_from_db()
    assert (label.name, label.vector_model) == ("giraffe", encoder.model_name())
    np.testing.assert_allclose(
        encoder.from_bytes(label.vector), encoder.encode_texts(["giraffe"])[0], atol=1e-6
    )
    for pk in zebras:
        assert not np.allclose(_hybrid(pk), before[pk])
        np.testing.assert_allclose(_hybrid(pk), _formula(pk, settings.IMAGESEARCH_IMAGE_WEIGHT), atol=1e-6)
    assert _top("giraffe", 2) == set(zebras)


def test_a_deleted_label_leaves_its_images_their_other_labels_or_their_picture_alone(
    sent, staff_client, monkeypatch
):
    both, only, other = create_indexed_images([(1, ["zebra", "sunset"]), (2, ["zebra"]), (3, ["bicycle"])])
    sent.clear()
    image_model = _forbid_the_image_model(monkeypatch)
    label = Label.objects.get(name="zebra")

    response = staff_client.post(f"/admin/gallery/label/{label.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content[:2000]
    assert _deliver(sent) == [
        dispatch.REFRESH_TASK,
        dispatch.REBUILD_TASK,
        dispatch.LABELLING_TASK,
        dispatch.DUPLICATES_TASK,
    ]

    assert not Label.objects.filter(name="zebra").exists()
    assert Image.objects.get(pk=both).label_names == ["sunset"]
    np.testing.assert_allclose(_hybrid(both), _formula(both, settings.IMAGESEARCH_IMAGE_WEIGHT), atol=1e-6)
    assert _top("sunset", 1) == {both}

    # The rule for an image left with no label (user guide, "Edit and delete"): it stays in the
    # library and in search, its hybrid is its image vector, and its picture finds it.
    left = Image.objects.get(pk=only)
    assert left.label_names == [] and left.status == Image.Status.READY
    picture = encoder.from_bytes(left.image_vector)
    np.testing.assert_allclose(_hybrid(only), picture / np.linalg.norm(picture), atol=1e-6)
    monkeypatch.setattr(encoder, "encode_images", image_model)  # for the query image
    page = ranking.images_search(vector=query_vectors.query_vector_for_image(data=image_bytes(2)))
    assert page.hits[0].image.pk == only and page.hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert other in {hit.image.pk for hit in page.hits}


def test_a_new_image_weight_gives_every_stored_hybrid_the_formula_at_that_weight(
    sent, staff_client, settings, monkeypatch
):
    ids = create_indexed_images([(1, ["sunset"]), (2, ["sunset", "bicycle"]), (3, ["zebra", "bicycle"])])
    sent.clear()
    _forbid_the_image_model(monkeypatch)
    at_half = {pk: _hybrid(pk) for pk in ids}

    settings.IMAGESEARCH_IMAGE_WEIGHT = 0.8
    response = staff_client.post("/admin/search/indexstate/status/", {"action": "embed_missing"})
    assert response.status_code == 302
    assert _deliver(sent) == [
        dispatch.REFRESH_TASK,
        dispatch.REBUILD_TASK,
        dispatch.LABELLING_TASK,
        dispatch.DUPLICATES_TASK,
    ]

    for pk in ids:
        np.testing.assert_allclose(_hybrid(pk), _formula(pk, 0.8), atol=1e-6)
        np.testing.assert_allclose(at_half[pk], _formula(pk, 0.5), atol=1e-6)
        assert not np.allclose(_hybrid(pk), at_half[pk], atol=1e-3)
    manifest = search_index.read_current_manifest(settings.INDEX_DIR)
    assert (manifest.image_weight, manifest.count) == (0.8, len(ids))
