"""Upload validation: only real images of the allowed formats get in, decoded once, as RGB.

Every refusal is an :class:`InvalidImage` whose message a person can act on.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from django.conf import settings
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

# Pillow format name -> (stored extension, content type). Everything else is refused.
ALLOWED_FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "MPO": ("jpg", "image/jpeg"),  # multi-picture JPEG from phones: a JPEG with extra frames
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
}
ALLOWED_DESCRIPTION = "JPEG, PNG, WebP, GIF, BMP or TIFF"

# Only these decoders are ever asked to open an upload, so a file cannot pick an exotic one.
_OPEN_FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"]

THUMBNAIL_SIZE = 512  # long side; also big enough (>= 224 short side for most photos) to embed


class InvalidImage(ValueError):
    """The upload is not an image this application accepts; the message says why."""


def check_upload_size(size: int, *, what: str = "the file") -> None:
    """Refuse a file over IMAGESEARCH_MAX_UPLOAD_BYTES: every upload (gallery images and query
    images, page and API) is held to this one limit, checked by its declared size first."""
    limit = settings.IMAGESEARCH_MAX_UPLOAD_BYTES
    if size > limit:
        raise InvalidImage(f"{what} is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB.")


def read_upload(file: BinaryIO) -> bytes:
    """An upload's bytes, never more than one past the limit, whatever its headers declared:
    one byte over is enough for :func:`validate_image_bytes` to refuse it."""
    return file.read(settings.IMAGESEARCH_MAX_UPLOAD_BYTES + 1)


@dataclass(frozen=True)
class ValidatedImage:
    """An accepted upload. ``width`` x ``height`` is its displayed size (orientation applied);
    ``rgb`` is decoded at that size or, for JPEG, smaller (see :func:`_draft_size`), never with
    fewer pixels than the thumbnail needs."""

    data: bytes
    sha256: str
    format: str
    extension: str
    content_type: str
    width: int
    height: int
    rgb: PILImage.Image  # orientation applied, RGB

    def thumbnail_jpeg(self) -> bytes:
        thumb = self.rgb.copy()
        thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), PILImage.Resampling.LANCZOS)
        out = io.BytesIO()
        thumb.save(out, "JPEG", quality=85, optimize=True)
        return out.getvalue()


def to_rgb(image: PILImage.Image) -> PILImage.Image:
    """Convert any Pillow mode to RGB; transparency is composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping everything above 255.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        image = PILImage.fromarray(np.nan_to_num(scaled).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def validate_image_bytes(data: bytes, *, name: str = "") -> ValidatedImage:
    """Open ``data`` with Pillow and return it decoded, or raise :class:`InvalidImage`.

    Refuses: empty or oversized files, formats outside the allow-list (whatever the file name
    says), truncated or corrupt data, images over the pixel limit (including the range where
    Pillow itself only warns), and animations with more frames than allowed.
    """
    label = f"{name}: " if name else ""
    if len(data) == 0:
        raise InvalidImage(f"{label}the file is empty.")
    check_upload_size(len(data), what=f"{label}the file")
    max_pixels = settings.IMAGESEARCH_MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data), formats=_OPEN_FORMATS)
            fmt = image.format or ""
            if fmt not in ALLOWED_FORMATS:
                raise InvalidImage(f"{label}{fmt} images are not accepted; use {ALLOWED_DESCRIPTION}.")
            width, height = image.size
            if width < 1 or height < 1:
                raise InvalidImage(f"{label}the image has no pixels.")
            if width * height > max_pixels:
                raise InvalidImage(
                    f"{label}the image is {width}x{height} pixels; the limit is "
                    f"{max_pixels / 1e6:.0f} megapixels."
                )
            frames = getattr(image, "n_frames", 1)
            if frames > settings.IMAGESEARCH_MAX_FRAMES:
                raise InvalidImage(
                    f"{label}the animation has {frames} frames; the limit is "
                    f"{settings.IMAGESEARCH_MAX_FRAMES}."
                )
            image.seek(0)
            if fmt in ("JPEG", "MPO"):
                image.draft(None, _draft_size(width, height))
            image.load()
            decoded_size = image.size
            try:
                image = ImageOps.exif_transpose(image)
            except Exception:  # noqa: BLE001 - a broken EXIF block must not refuse a good image
                pass
            rgb = to_rgb(image)
            # The displayed size: the file's, turned like the pixels were (90 degrees or not).
            width, height = (width, height) if rgb.size == decoded_size else (height, width)
    except InvalidImage:
        raise
    except UnidentifiedImageError:
        raise InvalidImage(f"{label}this is not an image we can read; use {ALLOWED_DESCRIPTION}.") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise InvalidImage(
            f"{label}the image declares too many pixels (limit {max_pixels / 1e6:.0f} megapixels)."
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, IndexError, TypeError) as exc:
        # Truncated data, corrupt chunks, text-chunk bombs (ValueError), broken headers.
        raise InvalidImage(f"{label}the image is damaged or truncated ({exc}).") from None
    ext, content_type = ALLOWED_FORMATS[fmt]
    return ValidatedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        extension=ext,
        content_type=content_type,
        width=width,
        height=height,
        rgb=rgb,
    )


def _draft_size(width: int, height: int) -> tuple[int, int]:
    """What to ask JPEG draft mode for: a decoded image that still covers the thumbnail.

    libjpeg then decodes at 1/2, 1/4 or 1/8 scale (its IDCT scales while decoding), several
    times faster for a large photo. Every byte of the compressed data is still read, so
    damage and truncation are still refused.
    The search model reads 224 px; the thumbnail (``THUMBNAIL_SIZE`` long side) is what
    the worker embeds, so nothing downstream wants more pixels than this.
    """
    long_side = max(width, height)
    return (
        max(1, -(-THUMBNAIL_SIZE * width // long_side)),
        max(1, -(-THUMBNAIL_SIZE * height // long_side)),
    )
