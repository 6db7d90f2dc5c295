"""A bulk upload hands its images to the worker a batch at a time, while it is still storing."""

from __future__ import annotations

import pytest

from gallery.models import Image
from gallery.services import images_create
from search import dispatch
from tests.factories import upload
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db(transaction=True)  # no outer transaction, as in a request


def _uploads(count: int):
    return [upload(image_bytes(seed), ["batch"], f"img{seed}.png") for seed in range(count)]


def test_each_full_batch_is_enqueued_as_soon_as_it_is_stored(settings, monkeypatch):
    settings.IMAGESEARCH_EMBED_BATCH_SIZE = 2
    calls: list[tuple[list[int], int]] = []  # (ids enqueued, images stored at that moment)
    monkeypatch.setattr(
        dispatch,
        "embedding_enqueue",
        lambda *, image_ids: calls.append((list(image_ids), Image.objects.count())) or True,
    )

    result = images_create(uploads=_uploads(5))

    assert result.queued and len(result.added) == 5
    assert [ids for ids, _ in calls] == [result.added[0:2], result.added[2:4], result.added[4:5]]
    assert [stored for _, stored in calls] == [2, 4, 5]  # the worker had work before the end


def test_after_a_failed_enqueue_the_rest_is_left_to_the_sweep_without_trying_again(settings, monkeypatch):
    settings.IMAGESEARCH_EMBED_BATCH_SIZE = 2
    attempts: list[list[int]] = []
    monkeypatch.setattr(
        dispatch, "embedding_enqueue", lambda *, image_ids: attempts.append(list(image_ids)) and False
    )

    result = images_create(uploads=_uploads(5))

    assert not result.queued and len(result.added) == 5
    assert len(attempts) == 1  # a broker that is down is not waited for once per batch
    assert Image.objects.pending().count() == 5
