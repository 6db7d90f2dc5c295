"""Large JPEGs are decoded at a reduced scale (draft mode): faster, and still fully checked."""

import io

import pytest
from PIL import Image

from gallery.validation import THUMBNAIL_SIZE, InvalidImage, validate_image_bytes
from tests.support.images import make_image

SIZE = (2048, 1536)


def _photo(mode: str = "RGB", exif_orientation: int | None = None) -> bytes:
    out = io.BytesIO()
    image = make_image(7, (SIZE[0] // 4, SIZE[1] // 4)).resize(SIZE).convert(mode)
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    image.save(out, "JPEG", quality=90, **kwargs)
    return out.getvalue()


def test_large_jpeg_keeps_its_full_size_but_is_decoded_only_as_large_as_the_thumbnail_needs():
    validated = validate_image_bytes(_photo())

    assert (validated.width, validated.height) == SIZE
    assert max(validated.rgb.size) >= THUMBNAIL_SIZE
    assert validated.rgb.size[0] < SIZE[0]  # not decoded at full resolution
    thumbnail = Image.open(io.BytesIO(validated.thumbnail_jpeg()))
    assert thumbnail.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE * SIZE[1] // SIZE[0])


def test_large_rotated_jpeg_reports_the_turned_size():
    validated = validate_image_bytes(_photo(exif_orientation=6))  # rotate 90

    assert (validated.width, validated.height) == (SIZE[1], SIZE[0])
    assert validated.rgb.size[1] > validated.rgb.size[0]


def test_large_cmyk_jpeg_is_accepted_as_rgb():
    validated = validate_image_bytes(_photo(mode="CMYK"))

    assert validated.rgb.mode == "RGB" and (validated.width, validated.height) == SIZE


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_truncated_large_jpeg_is_still_refused(keep):
    data = _photo()

    with pytest.raises(InvalidImage, match="damaged or truncated"):
        validate_image_bytes(data[: int(len(data) * keep)])
