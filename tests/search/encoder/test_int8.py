"""int8 only where a worker measured that it gives fp32's top 10 on this library
(IMAGESEARCH_ENCODER_INT8): refused, with the reason and the figure on the status page, on the
tests' random-weight CLIP; served where the measurement agrees; fp32 until it is measured."""

from __future__ import annotations

import pytest

from search import encoder
from search.encoder import cache, int8
from search.ingest import pipeline
from tests.factories import create_images

pytestmark = pytest.mark.django_db

STATUS_JSON = "/admin/search/indexstate/status.json"
WORDS = ["zebra", "sunset", "bicycle", "beach", "kitten", "lake", "car", "night", "harbour", "forest"]


@pytest.fixture(autouse=True)
def _int8_asked_for(settings, clip_model_dir):
    settings.IMAGESEARCH_ENCODER = "onnx"
    settings.IMAGESEARCH_ENCODER_INT8 = True
    # The decision is kept beside the session's one export of the tiny CLIP: each test starts unmeasured.
    decision = cache.find_export(str(clip_model_dir), encoder.export_root()) / int8.AGREEMENT_FILE
    decision.unlink(missing_ok=True)
    encoder.reset()
    yield
    decision.unlink(missing_ok=True)
    encoder.reset()


def _library(count: int) -> list[int]:
    ids = create_images([(seed, [WORDS[seed % 10], WORDS[(seed * 7) % 10]]) for seed in range(1, count + 1)])
    pipeline.images_embed(image_ids=ids)
    return ids


def test_on_random_weights_int8_is_refused_and_the_refusal_is_explained(staff_client):
    _library(60)

    result = pipeline.int8_measure_if_due()

    assert result is not None and result["use_int8"] is False
    assert result["agreement"] < int8.MIN_AGREEMENT
    assert (result["queries"], result["images"]) == (10, 60)
    assert "int8 is refused and fp32 serves" in result["reason"]
    assert "Scores that lie close together" in result["reason"]
    encoder.ensure_models()
    assert encoder.get_model().precision == "fp32"
    data = staff_client.get(STATUS_JSON).json()
    assert data["int8_agreement"] == result["agreement"]
    assert data["int8_reason"] == result["reason"]
    assert data["encoder"] == "onnx on CPUExecutionProvider, fp32"
    assert pipeline.int8_measure_if_due() is None  # once per model


def test_int8_serves_once_the_measurement_agrees(staff_client, monkeypatch):
    _library(60)
    monkeypatch.setattr(int8, "MIN_AGREEMENT", 0.0)  # a library on which any int8 agrees enough

    result = pipeline.int8_measure_if_due()

    assert result is not None and result["use_int8"] is True
    assert "int8 serves" in result["reason"]
    assert encoder.encode_texts(["zebra"]).shape == (1, 64)
    assert encoder.get_model().precision == "int8"
    assert staff_client.get(STATUS_JSON).json()["encoder"] == "onnx on CPUExecutionProvider, int8"


def test_until_the_library_is_large_enough_fp32_serves_and_the_page_says_why(staff_client):
    _library(5)

    assert pipeline.int8_measure_if_due() is None
    assert encoder.get_model().precision == "fp32"
    data = staff_client.get(STATUS_JSON).json()
    assert data["int8_agreement"] is None
    assert "not measured yet" in data["int8_reason"]
