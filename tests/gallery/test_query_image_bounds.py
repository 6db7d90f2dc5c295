"""Query images are bounded before they are decoded: their own byte and pixel limits, far below
the staff upload's, the formats browsers send, a reduced decode, and no float64 copies of wide
modes. The search page, the API and /knn-service's base64 follow the same rules."""

from __future__ import annotations

import base64
import io
import tracemalloc

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from gallery import validation
from gallery.validation import QUERY_DECODE_SIDE, InvalidImage, query_image_decode, validate_image_bytes
from tests.support.images import image_bytes


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_a_query_image_over_its_own_pixel_limit_is_refused_though_staff_may_upload_it(settings):
    settings.IMAGESEARCH_MAX_QUERY_IMAGE_PIXELS = 5000
    data = image_bytes(1, "PNG", size=(100, 100))
    assert validate_image_bytes(data).width == 100  # within the staff limit
    with pytest.raises(InvalidImage, match="search images are at most 0 megapixels"):
        query_image_decode(data)


def test_a_query_image_over_its_byte_limit_is_refused_before_decoding(settings):
    settings.IMAGESEARCH_MAX_QUERY_IMAGE_BYTES = 1000
    with pytest.raises(InvalidImage, match="search images are at most 0.0 MB"):
        query_image_decode(b"\x89PNG" + b"\0" * 2000)


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_only_formats_browsers_send_are_decoded_as_query_images(fmt):
    data = image_bytes(2, fmt)
    assert validate_image_bytes(data).format == fmt  # staff may still upload it
    with pytest.raises(InvalidImage, match="JPEG, PNG, WebP or GIF"):
        query_image_decode(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_a_large_query_image_is_decoded_reduced_to_what_the_model_needs(fmt):
    rgb = query_image_decode(image_bytes(3, fmt, size=(3000, 2000)))
    assert rgb.mode == "RGB"
    assert QUERY_DECODE_SIDE <= min(rgb.size) < 2 * QUERY_DECODE_SIDE
    assert rgb.width / rgb.height == pytest.approx(1.5, rel=0.01)


def test_a_small_query_image_is_decoded_at_its_own_size():
    assert query_image_decode(image_bytes(4, "PNG", size=(96, 72))).size == (96, 72)


def test_a_sixteen_bit_query_image_is_scaled_to_eight_bits():
    ramp = np.tile(np.arange(1000, 61000, 60, dtype=np.uint16), (100, 1))  # 100 x 1000
    rgb = query_image_decode(_png(Image.fromarray(ramp)))
    values = np.asarray(rgb)[..., 0]
    assert values.min() == 0 and values.max() >= 250  # its own range, not clipped at 255


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_wide_grey_modes_are_converted_without_float64_copies(mode):
    side = 1000
    array = (np.arange(side * side, dtype=np.uint32) % 50000).reshape(side, side)
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    image = Image.fromarray(array.astype(dtype))
    assert image.mode == mode
    tracemalloc.start()
    try:
        rgb = validation.to_rgb(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rgb.mode == "RGB"
    # A float64 copy alone is 8 bytes a pixel; this conversion holds at most two narrow arrays.
    assert peak < 7 * side * side, f"{peak / (side * side):.1f} bytes per pixel"


def test_a_pixel_limit_above_pillows_own_takes_effect(settings, monkeypatch):
    # Pillow's own limit (89.5 MP by default) played by a small one, to stay small in memory.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    settings.IMAGESEARCH_MAX_IMAGE_PIXELS = 5000
    assert validate_image_bytes(image_bytes(5, "PNG", size=(60, 60))).width == 60
    with pytest.raises(InvalidImage, match="the limit is 0 megapixels|limit 0 megapixels"):
        validate_image_bytes(image_bytes(5, "PNG", size=(80, 80)))


# --- The same rules on every way in ------------------------------------------------------------


@pytest.mark.django_db
def test_the_page_the_api_and_knn_service_refuse_a_tiff_query_image_alike(client):
    data = image_bytes(6, "TIFF")
    page = client.post("/", {"image": SimpleUploadedFile("q.tiff", data)})
    assert page.status_code == 400
    assert "JPEG, PNG, WebP or GIF" in page.context["error"]
    api = client.post("/api/search", {"image": SimpleUploadedFile("q.tiff", data)})
    assert api.status_code == 400
    assert "JPEG, PNG, WebP or GIF" in api.json()["error"]
    knn = client.post(
        "/knn-service", {"image": base64.b64encode(data).decode()}, content_type="application/json"
    )
    assert knn.status_code == 400
    assert "JPEG, PNG, WebP or GIF" in knn.json()["error"]


@pytest.mark.django_db
def test_the_page_the_api_and_knn_service_refuse_an_oversized_query_image_alike(client, settings):
    settings.IMAGESEARCH_MAX_QUERY_IMAGE_BYTES = 2000
    data = image_bytes(7, "PNG", size=(200, 200))
    assert len(data) > 2000
    page = client.post("/", {"image": SimpleUploadedFile("q.png", data)})
    assert page.status_code == 400
    assert "search images are at most" in page.context["error"]
    api = client.post("/api/search", {"image": SimpleUploadedFile("q.png", data)})
    assert api.status_code == 400
    assert "search images are at most" in api.json()["error"]
    knn = client.post(
        "/knn-service", {"image": base64.b64encode(data).decode()}, content_type="application/json"
    )
    assert knn.status_code == 400
    assert "search images are at most" in knn.json()["error"]
