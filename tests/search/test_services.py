"""Embedding, rebuilding and searching through the services (no worker: called directly)."""

from __future__ import annotations

import numpy as np
import pytest

from gallery import services as gallery_services
from gallery.models import Image, Label
from search import encoder, errors
from search.ingest import actions, pipeline, rebuild
from search.query import ranking
from search.query import vectors as query_vectors
from tests.factories import create_images, upload
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db

# Labels whose tiny-model text vectors are far apart (checked by the test below).
LABELS = ["sunset", "bicycle", "zebra"]


def test_test_labels_are_far_apart_in_the_tiny_model():
    vectors = encoder.encode_texts(LABELS)
    sims = vectors @ vectors.T
    off_diagonal = sims[~np.eye(len(LABELS), dtype=bool)]
    assert off_diagonal.max() < 0.9, sims


def test_embedding_marks_images_ready_with_both_vectors():
    ids = create_images([(1, ["sunset"]), (2, ["bicycle"])])
    report = pipeline.images_embed(image_ids=ids)
    assert report.embedded == 2
    for image in Image.objects.filter(pk__in=ids):
        assert image.status == Image.Status.READY
        assert image.embedding_model == encoder.model_name()
        vector = encoder.from_bytes(image.image_vector)
        hybrid = encoder.from_bytes(image.hybrid_vector)
        assert vector.shape == hybrid.shape == (64,)
        assert np.linalg.norm(hybrid) == pytest.approx(1, abs=1e-5)
        label = image.labels.get()
        expected = encoder.combine(vector, [encoder.from_bytes(label.vector)], 0.5)
        np.testing.assert_allclose(hybrid, expected, rtol=1e-5)


def test_label_vectors_are_computed_once_per_label(monkeypatch):
    ids = create_images([(1, ["sunset"]), (2, ["sunset"]), (3, ["sunset", "zebra"])])
    calls: list[list[str]] = []
    original = encoder.encode_texts
    monkeypatch.setattr(
        encoder, "encode_texts", lambda texts, **kw: calls.append(list(texts)) or original(texts, **kw)
    )
    pipeline.images_embed(image_ids=ids)
    pipeline.images_embed(image_ids=create_images([(4, ["zebra"])]))
    assert calls == [["sunset", "zebra"]]
    assert Label.objects.filter(vector_model=encoder.model_name()).count() == 2


def test_embedding_twice_does_the_work_once(monkeypatch):
    ids = create_images([(1, ["sunset"])])
    pipeline.images_embed(image_ids=ids)
    before = Image.objects.get(pk=ids[0]).image_vector

    def no_model(*args, **kwargs):
        raise AssertionError("the image model ran again")

    monkeypatch.setattr(encoder, "encode_images", no_model)
    report = pipeline.images_embed(image_ids=ids)
    assert (report.embedded, report.refreshed) == (0, 1)
    assert Image.objects.get(pk=ids[0]).image_vector == before


def test_relabel_recomputes_hybrid_without_the_image_model(monkeypatch):
    [image_id] = create_images([(1, ["sunset"])])
    pipeline.images_embed(image_ids=[image_id])
    image = Image.objects.get(pk=image_id)
    old_hybrid = encoder.from_bytes(image.hybrid_vector)
    monkeypatch.setattr(encoder, "encode_images", lambda *a, **k: pytest.fail("image model ran"))
    gallery_services.image_relabel(image=image, names=["zebra"])
    pipeline.hybrids_refresh(image_ids=[image_id])
    image.refresh_from_db()
    new_hybrid = encoder.from_bytes(image.hybrid_vector)
    zebra = encoder.from_bytes(Label.objects.get(name="zebra").vector)
    expected = encoder.combine(encoder.from_bytes(image.image_vector), [zebra], 0.5)
    np.testing.assert_allclose(new_hybrid, expected, rtol=1e-5)
    assert not np.allclose(new_hybrid, old_hybrid)


def test_weight_change_is_detected_and_recomputed(settings):
    [image_id] = create_images([(1, ["sunset"])])
    pipeline.images_embed(image_ids=[image_id])
    settings.IMAGESEARCH_IMAGE_WEIGHT = 0.8
    assert actions.images_embed_missing() == {"reembed": 0, "reweigh": 1, "text_model": 0}
    pipeline.hybrids_refresh(image_ids=[image_id])
    image = Image.objects.get(pk=image_id)
    assert image.hybrid_weight == 0.8


def _index_everything(ids):
    pipeline.images_embed(image_ids=ids)
    assert rebuild.index_rebuild().built


def test_text_query_ranks_the_labels_images_first():
    ids = create_images([(1, ["sunset"]), (2, ["bicycle"]), (3, ["zebra"]), (4, ["bicycle"])])
    _index_everything(ids)
    for label in LABELS:
        page = ranking.images_search(vector=query_vectors.query_vector_for_text(text=label))
        expected = set(Image.objects.filter(labels__name=label).values_list("pk", flat=True))
        top = {hit.image.pk for hit in page.hits[: len(expected)]}
        assert top == expected, (label, [(h.image.label_names, h.score) for h in page.hits])


def test_image_query_with_an_indexed_images_file_returns_it_first():
    # One label for all: a random tiny tower maps different pictures to vectors with cosine
    # 0.65-0.97, so with different labels the label half of the hybrid could outweigh the
    # image half. (The real model separates pictures far more.)
    ids = create_images([(seed, ["zebra"]) for seed in range(1, 7)])
    _index_everything(ids)
    for seed, image_id in zip(range(1, 7), ids, strict=True):
        page = ranking.images_search(vector=query_vectors.query_vector_for_image(data=image_bytes(seed)))
        assert page.hits[0].image.pk == image_id


def test_image_query_with_image_weight_one_finds_the_image_whatever_its_label(settings):
    settings.IMAGESEARCH_IMAGE_WEIGHT = 1.0
    ids = create_images([(seed, [LABELS[seed % 3]]) for seed in range(1, 7)])
    _index_everything(ids)
    for seed, image_id in zip(range(1, 7), ids, strict=True):
        page = ranking.images_search(vector=query_vectors.query_vector_for_image(data=image_bytes(seed)))
        assert page.hits[0].image.pk == image_id
        assert page.hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_deleted_image_never_appears_in_results():
    ids = create_images([(1, ["zebra"]), (2, ["zebra"])])
    _index_everything(ids)
    gallery_services.images_delete(images=Image.objects.filter(pk=ids[0]))
    page = ranking.images_search(vector=query_vectors.query_vector_for_text(text="zebra"))
    assert [h.image.pk for h in page.hits] == [ids[1]]


def test_search_before_any_index_says_so():
    with pytest.raises(errors.SearchUnavailable, match="Nothing has been indexed"):
        ranking.images_search(vector=query_vectors.query_vector_for_text(text="zebra"))


def test_empty_query_is_refused_with_a_message():
    with pytest.raises(errors.QueryError, match="Type a few words"):
        query_vectors.query_vector_for_text(text=" \t\x00 ")


def test_pages_do_not_overlap_and_say_when_there_is_more():
    ids = create_images([(seed, ["zebra"]) for seed in range(1, 8)])
    _index_everything(ids)
    vector = query_vectors.query_vector_for_text(text="zebra")
    first = ranking.images_search(vector=vector, page=1, page_size=3)
    second = ranking.images_search(vector=vector, page=2, page_size=3)
    third = ranking.images_search(vector=vector, page=3, page_size=3)
    seen = [h.image.pk for p in (first, second, third) for h in p.hits]
    assert sorted(seen) == sorted(ids)
    assert first.has_next and second.has_next and not third.has_next


def test_duplicate_upload_is_reported_not_stored_twice():
    data = image_bytes(9)
    first = gallery_services.images_create(uploads=[upload(data, ["zebra"])])
    second = gallery_services.images_create(uploads=[upload(data, ["sunset"], "again.png")])
    assert len(first.added) == 1 and second.added == []
    assert second.duplicates == [("again.png", first.added[0])]
    assert Image.objects.count() == 1


def test_model_that_cannot_load_marks_images_failed_with_the_reason(settings, tmp_path):
    ids = create_images([(1, ["zebra"])])
    settings.IMAGESEARCH_CLIP_MODEL = str(tmp_path / "no-such-model")
    try:
        pipeline.images_embed(image_ids=ids)
    finally:
        encoder.reset()
    image = Image.objects.get(pk=ids[0])
    assert image.status == Image.Status.FAILED
    assert "no-such-model" in image.failure_reason
