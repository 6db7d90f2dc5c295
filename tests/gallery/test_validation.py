"""Upload validation: real images of allowed formats only, decoded to RGB."""

import io

import pytest
from PIL import Image

from gallery.validation import InvalidImage, validate_image_bytes
from tests.support.images import image_bytes, make_image


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_allowed_formats_are_accepted_as_rgb(fmt):
    validated = validate_image_bytes(image_bytes(1, fmt))
    assert validated.rgb.mode == "RGB"
    assert (validated.width, validated.height) == (96, 72)
    assert len(validated.sha256) == 64


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"%PDF-1.4\n1 0 obj<<>>endobj\n", "not an image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "not an image"),
    ],
)
def test_non_images_are_refused_with_a_reason(data, message):
    with pytest.raises(InvalidImage, match=message):
        validate_image_bytes(data)


def test_truncated_png_is_refused():
    data = image_bytes(2, "PNG")
    with pytest.raises(InvalidImage, match="damaged or truncated"):
        validate_image_bytes(data[: len(data) // 2])


def test_exif_orientation_is_applied():
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    make_image(3, (80, 40)).save(out, "JPEG", exif=exif)
    validated = validate_image_bytes(out.getvalue())
    assert (validated.width, validated.height) == (40, 80)


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "I;16"])
def test_any_mode_is_converted_to_rgb(mode):
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    image = make_image(4).convert("L").convert(mode) if mode == "I;16" else make_image(4).convert(mode)
    out = io.BytesIO()
    image.save(out, fmt)
    assert validate_image_bytes(out.getvalue()).rgb.mode == "RGB"


def test_pixel_limit_is_enforced(settings):
    settings.IMAGESEARCH_MAX_IMAGE_PIXELS = 1000
    with pytest.raises(InvalidImage, match="megapixels"):
        validate_image_bytes(image_bytes(5, "PNG", size=(100, 100)))


def test_size_limit_is_enforced(settings):
    settings.IMAGESEARCH_MAX_UPLOAD_BYTES = 100
    with pytest.raises(InvalidImage, match="limit"):
        validate_image_bytes(image_bytes(6, "PNG"))
