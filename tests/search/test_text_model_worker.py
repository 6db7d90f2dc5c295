"""A worker started with another IMAGESEARCH_TEXT_MODEL brings the library over by itself: its
start-up sweep sends the hybrids made from the old label vectors for a refresh, which re-encodes
the labels with the new text model and re-derives the hybrids from the stored image vectors; the
image model never runs (counted in the worker process), and the index is rebuilt."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from gallery.models import Image, Label
from search import encoder
from search.status import index_behind
from tests.conftest import require_service
from tests.factories import create_images, create_indexed_images
from tests.support import env
from tests.support.waiting import wait_for, wait_until_indexed

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_started_with_another_text_model_rederives_hybrids_without_the_image_model(
    start_worker, text_model_dir, settings, client, tmp_path
):
    require_service(env.redis_available(), "Redis at 127.0.0.1:6379")
    ids = create_indexed_images([(1, ["sunset"]), (2, ["sunset", "猫"]), (3, ["кошка"]), (4, ["zebra"])])
    image_vectors = dict(Image.objects.values_list("pk", "image_vector"))
    assert Label.objects.vectors_outdated(str(text_model_dir)).count() == 4

    settings.IMAGESEARCH_TEXT_MODEL = str(text_model_dir)  # this process answers the queries
    calls = tmp_path / "image-model-calls"
    start_worker(
        env_overrides={
            "IMAGESEARCH_TEXT_MODEL": str(text_model_dir),
            "DJANGO_SETTINGS_MODULE": "tests.support.settings_count_image_model",
            "IMAGESEARCH_TEST_IMAGE_MODEL_CALLS": str(calls),
        }
    )

    def caught_up() -> bool:
        later = timezone.now() + timedelta(hours=1)
        return (
            not Label.objects.vectors_outdated(encoder.text_model_name()).exists()
            and not Image.objects.ready().hybrids_stale(changed_before=later).exists()
            and not index_behind()
        )

    wait_for(caught_up, timeout=120, interval=0.5, what="hybrids re-derived with the new text model")
    assert {label.vector_model for label in Label.objects.all()} == {str(text_model_dir)}
    assert dict(Image.objects.values_list("pk", "image_vector")) == image_vectors
    # Loaded (the text model's dimension is checked against it), never asked to encode.
    assert calls.read_text().splitlines() == ["loaded"]
    results = client.get("/api/search", {"text": "кошка"}).json()["results"]
    assert results[0]["id"] == ids[2]

    # The count does see the image model run: a new image is encoded once, in one batch.
    [new] = create_images([(5, ["猫"])])
    wait_until_indexed([new])
    assert calls.read_text().splitlines() == ["loaded", "encode 1"]
