"""A batch of the embedding task: its rows are written together, yet one unreadable image never
holds back the others, and a second run stores the same vectors (search.ingest.pipeline)."""

from __future__ import annotations

import pytest

from gallery.models import Image
from search.ingest import pipeline
from tests.factories import create_images

pytestmark = pytest.mark.django_db


def test_an_unreadable_file_fails_with_a_reason_and_the_rest_of_its_batch_gets_ready(sent):
    ids = create_images([(1, ["sunset"]), (2, ["zebra"]), (3, ["sunset", "sea"])])
    broken = Image.objects.get(pk=ids[1])
    with open(broken.file.path, "wb") as fh:
        fh.write(b"not an image any more")

    report = pipeline.images_embed(image_ids=ids)

    assert (report.embedded, report.failed) == (2, 1)
    rows = {i.pk: i for i in Image.objects.filter(pk__in=ids)}
    assert rows[ids[1]].status == Image.Status.FAILED
    assert "could not be read" in rows[ids[1]].failure_reason
    assert rows[ids[1]].hybrid_vector is None
    for pk in (ids[0], ids[2]):
        assert rows[pk].status == Image.Status.READY and rows[pk].failure_reason == ""
        assert rows[pk].image_vector is not None and rows[pk].hybrid_vector is not None


def test_a_second_run_over_a_ready_batch_stores_the_same_vectors(sent):
    ids = create_images([(4, ["sunset"]), (5, ["zebra", "sea"])])
    first = pipeline.images_embed(image_ids=ids)
    before = dict(Image.objects.filter(pk__in=ids).values_list("pk", "hybrid_vector"))
    pictures = dict(Image.objects.filter(pk__in=ids).values_list("pk", "image_vector"))

    second = pipeline.images_embed(image_ids=ids)

    assert (first.embedded, second.embedded, second.refreshed) == (2, 0, 2)
    assert dict(Image.objects.filter(pk__in=ids).values_list("pk", "hybrid_vector")) == before
    assert dict(Image.objects.filter(pk__in=ids).values_list("pk", "image_vector")) == pictures
    assert set(Image.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Image.Status.READY}
