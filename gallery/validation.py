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

from . import formats
from .dates import TakenAt, taken_at_read

THUMBNAIL_SIZE = 512  # long side; also big enough (>= 224 short side for most photos) to embed
DISPLAY_SIZE = 2560  # long side of the display copy of a format not every browser shows

# Query images (search page, API, /knn-service): only what browsers send (formats.for_queries),
# never kept. The model reads 224 x 224, so a query image is decoded no larger than this short
# side (draft mode for JPEG, a box reduction for the others) before anything converts it.
QUERY_DECODE_SIDE = 448


class InvalidImage(ValueError):
    """The upload is not an image this application accepts; the message says why."""


def check_upload_size(size: int, *, what: str = "the file") -> None:
    """Refuse a file over IMAGESEARCH_MAX_UPLOAD_BYTES: every upload (gallery images and query
    images, page and API) is held to this one limit, checked by its declared size first."""
    limit = settings.IMAGESEARCH_MAX_UPLOAD_BYTES
    if size > limit:
        raise InvalidImage(f"{what} is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB.")


def check_query_image_size(size: int, *, what: str = "The image") -> None:
    """Refuse a query image over IMAGESEARCH_MAX_QUERY_IMAGE_BYTES, by its declared size first."""
    limit = settings.IMAGESEARCH_MAX_QUERY_IMAGE_BYTES
    if size > limit:
        raise InvalidImage(f"{what} is {size / 1e6:.1f} MB; search images are at most {limit / 1e6:.1f} MB.")


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
    browsers_show: bool  # False: the pages show :meth:`display_jpeg` instead of the original
    taken: TakenAt | None = None  # when EXIF says the photo was taken (gallery.dates)

    def thumbnail_jpeg(self) -> bytes:
        return _jpeg(self.rgb, THUMBNAIL_SIZE, quality=85)

    def display_jpeg(self) -> bytes | None:
        """A copy every browser shows (JPEG, long side at most ``DISPLAY_SIZE``) for an original
        that not every browser does (HEIC, AVIF, TIFF); None when the original is shown as it is."""
        return None if self.browsers_show else _jpeg(self.rgb, DISPLAY_SIZE, quality=90)


def _jpeg(rgb: PILImage.Image, long_side: int, *, quality: int) -> bytes:
    copy = rgb.copy()
    copy.thumbnail((long_side, long_side), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    copy.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def to_rgb(image: PILImage.Image) -> PILImage.Image:
    """Convert any Pillow mode to RGB; transparency is composited onto white."""
    if image.mode in _WIDE_GREY_MODES:
        image = _wide_grey_to_l(image)
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


_WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _wide_grey_to_l(image: PILImage.Image) -> PILImage.Image:
    """16/32-bit greyscale scaled to 8 bits (its own darkest to brightest) instead of clipping
    everything above 255. No float64 copies: 16-bit goes through a 64 Ki lookup table (one byte
    per pixel out); 32-bit integers and floats through Pillow's own linear ``point``."""
    if image.mode.startswith("I;16"):
        array = np.asarray(image)
        low, high = int(array.min()), int(array.max())
        table = np.zeros(65536, dtype=np.uint8)
        if high > low:
            steps = np.arange(high - low + 1, dtype=np.uint32)
            table[low : high + 1] = (steps * 255 // (high - low)).astype(np.uint8)
        return PILImage.fromarray(table[array])
    low, high = image.getextrema()
    if not (np.isfinite(low) and np.isfinite(high)):  # floats with NaN or infinities: rare
        values = np.nan_to_num(np.asarray(image, dtype=np.float32), posinf=0.0, neginf=0.0)
        image = PILImage.fromarray(values)
        low, high = image.getextrema()
    if high <= low:
        return PILImage.new("L", image.size, 0)
    scale = 255.0 / (high - low)
    return image.point(lambda x: x * scale - low * scale).convert("L")


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
    _pillow_limit_follows_setting()
    allowed = formats.description()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data), formats=formats.pillow_names())
            fmt = image.format or ""
            accepted = formats.by_pillow_name(fmt)
            if accepted is None:
                raise InvalidImage(f"{label}{fmt} images are not accepted; use {allowed}.")
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
            taken = taken_at_read(image)
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
        raise InvalidImage(f"{label}this is not an image we can read; use {allowed}.") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise InvalidImage(
            f"{label}the image declares too many pixels (limit {max_pixels / 1e6:.0f} megapixels)."
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, IndexError, TypeError) as exc:
        # Truncated data, corrupt chunks, text-chunk bombs (ValueError), broken headers.
        raise InvalidImage(f"{label}the image is damaged or truncated ({str(exc).strip()}).") from None
    return ValidatedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        extension=accepted.extension,
        content_type=accepted.content_type,
        width=width,
        height=height,
        rgb=rgb,
        browsers_show=accepted.browsers_show,
        taken=taken,
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


def _pillow_limit_follows_setting() -> None:
    # Pillow warns above its own MAX_IMAGE_PIXELS (and refuses at twice that) whatever our
    # setting says; warnings are errors here, so without this a setting above Pillow's default
    # (89.5 MP) would have no effect while the refusal quoted it. The staff limit is the highest
    # of ours (query images are checked against theirs by size), so one value serves every thread.
    limit = max(settings.IMAGESEARCH_MAX_IMAGE_PIXELS, settings.IMAGESEARCH_MAX_QUERY_IMAGE_PIXELS)
    if PILImage.MAX_IMAGE_PIXELS != limit:
        PILImage.MAX_IMAGE_PIXELS = limit


def query_image_decode(data: bytes) -> PILImage.Image:
    """A query image as RGB, decoded no larger than the model needs, or :class:`InvalidImage`.

    Bounded before decoding: its bytes (IMAGESEARCH_MAX_QUERY_IMAGE_BYTES), the formats browsers
    send (:func:`gallery.formats.for_queries`), and its declared pixels (IMAGESEARCH_MAX_QUERY_IMAGE_PIXELS),
    read from the header. Only the first frame is decoded; JPEG decodes at a reduced scale, the
    others are box-reduced to :data:`QUERY_DECODE_SIDE` (short side) before any conversion.
    """
    if len(data) == 0:
        raise InvalidImage("the file is empty.")
    check_query_image_size(len(data), what="the file")
    max_pixels = settings.IMAGESEARCH_MAX_QUERY_IMAGE_PIXELS
    _pillow_limit_follows_setting()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data), formats=formats.pillow_names(formats.for_queries()))
            width, height = image.size
            if width < 1 or height < 1:
                raise InvalidImage("the image has no pixels.")
            if width * height > max_pixels:
                raise InvalidImage(
                    f"the image is {width}x{height} pixels; search images are at most "
                    f"{max_pixels / 1e6:.0f} megapixels."
                )
            if image.format in ("JPEG", "MPO"):
                image.draft(None, _query_draft_size(width, height))
            image.load()
            image = _reduced(image)
            try:
                image = ImageOps.exif_transpose(image)
            except Exception:  # noqa: BLE001 - a broken EXIF block must not refuse a good image
                pass
            return to_rgb(image)
    except InvalidImage:
        raise
    except UnidentifiedImageError:
        allowed = formats.description(formats.for_queries())
        raise InvalidImage(f"this is not an image we can read; use {allowed}.") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise InvalidImage(
            f"the image declares too many pixels (limit {max_pixels / 1e6:.0f} megapixels)."
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, IndexError, TypeError) as exc:
        raise InvalidImage(f"the image is damaged or truncated ({exc}).") from None


def _query_draft_size(width: int, height: int) -> tuple[int, int]:
    """The smallest JPEG draft whose short side still covers :data:`QUERY_DECODE_SIDE`."""
    short = min(width, height)
    if short <= QUERY_DECODE_SIDE:
        return width, height
    return (
        max(1, -(-QUERY_DECODE_SIDE * width // short)),
        max(1, -(-QUERY_DECODE_SIDE * height // short)),
    )


def _reduced(image: PILImage.Image) -> PILImage.Image:
    """``image`` box-reduced by a whole factor that keeps its short side >= QUERY_DECODE_SIDE."""
    factor = min(image.size) // QUERY_DECODE_SIDE
    if factor < 2:
        return image
    if image.mode.startswith("I;16"):  # Pillow's reduce() has no 16-bit modes; resize() has
        size = (max(1, image.width // factor), max(1, image.height // factor))
        return image.resize(size, PILImage.Resampling.BOX)
    if image.mode == "P":  # palette indices cannot be averaged: colours first, one byte to three
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    return image.reduce(factor)
