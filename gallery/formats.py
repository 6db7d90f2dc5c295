"""The image formats the library accepts: the one list that upload validation, the media views,
the upload page, the search box, the API description and the README follow.

Staff uploads take every format of :func:`accepted`. Query images (the search box, the API's
image search, /knn-service) take only :func:`for_queries`, the formats browsers send: anyone may
send one, and their decoding stays cheap and bounded.

HEIC/HEIF (what iPhones save) is read by pillow-heif; AVIF by Pillow's own plugin, and only
where this Pillow was built with it (``PIL.features.check("avif")``): a format the decoder
cannot read is not offered. A format that not every browser shows (``browsers_show`` False) gets
a JPEG display copy at upload, and the pages serve that copy; the original is kept as uploaded
and offered for download.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageFormat:
    name: str  # as people call it, in messages and docs
    pillow: tuple[str, ...]  # Pillow's format names that are this format
    extension: str  # of the stored original
    content_type: str  # of the stored original
    file_types: tuple[str, ...]  # what a browser may call such a file: MIME types and extensions
    browsers_show: bool  # every current browser displays it: no display copy is needed
    query: bool = False  # taken as a query image too (what browsers send)


_FORMATS = (
    # MPO: the multi-picture JPEG some phones save, a JPEG with extra frames.
    ImageFormat("JPEG", ("JPEG", "MPO"), "jpg", "image/jpeg", ("image/jpeg", ".jpg", ".jpeg"), True, True),
    ImageFormat("PNG", ("PNG",), "png", "image/png", ("image/png", ".png"), True, True),
    ImageFormat("WebP", ("WEBP",), "webp", "image/webp", ("image/webp", ".webp"), True, True),
    ImageFormat("GIF", ("GIF",), "gif", "image/gif", ("image/gif", ".gif"), True, True),
    ImageFormat("BMP", ("BMP",), "bmp", "image/bmp", ("image/bmp", ".bmp"), True),
    ImageFormat("TIFF", ("TIFF",), "tiff", "image/tiff", ("image/tiff", ".tif", ".tiff"), False),
    ImageFormat(
        "HEIC",
        ("HEIF",),
        "heic",
        "image/heic",
        ("image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence", ".heic", ".heif"),
        False,
    ),
    # Older Safari and Edge releases do not show AVIF: the pages get a JPEG copy.
    ImageFormat("AVIF", ("AVIF",), "avif", "image/avif", ("image/avif", ".avif"), False),
)


@functools.cache
def accepted() -> tuple[ImageFormat, ...]:
    """The formats this installation reads, in the order people see them listed."""
    return tuple(f for f in _FORMATS if all(_decoder_ready(p) for p in f.pillow))


def for_queries() -> tuple[ImageFormat, ...]:
    """The formats a query image may be in: those browsers send."""
    return tuple(f for f in accepted() if f.query)


def _decoder_ready(pillow_name: str) -> bool:
    if pillow_name == "HEIF":
        return decoders_register()
    if pillow_name == "AVIF":
        from PIL import features

        return bool(features.check("avif"))
    return True


@functools.cache
def decoders_register() -> bool:
    """Teach Pillow to open HEIC/HEIF (pillow-heif's opener), once per process; False when
    pillow-heif is not installed (HEIC is then not accepted)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def by_pillow_name(name: str) -> ImageFormat | None:
    """The accepted format Pillow calls ``name``; None for any other."""
    return next((f for f in accepted() if name in f.pillow), None)


def pillow_names(of: Sequence[ImageFormat] | None = None) -> list[str]:
    """The only decoders a file is offered to (``of``: :func:`accepted` unless given), so that it
    cannot pick another one; Pillow's JPEG decoder reports an MPO itself."""
    return [name for f in (accepted() if of is None else of) for name in f.pillow if name != "MPO"]


def description(of: Sequence[ImageFormat] | None = None) -> str:
    """``"JPEG, PNG, ... or AVIF"``, for messages, the pages and the API description."""
    names = [f.name for f in (accepted() if of is None else of)]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def file_input_accept(of: Sequence[ImageFormat] | None = None) -> str:
    """The ``accept`` attribute of a file picker: MIME types and extensions (a browser that does
    not know HEIC's type gives such a file no type at all, so its extension must do)."""
    return ",".join(t for f in (accepted() if of is None else of) for t in f.file_types)


def content_types_by_extension() -> dict[str, str]:
    """``.heic`` -> ``image/heic``, for every stored original's extension, plus the JPEG that
    thumbnails and display copies are."""
    types = {f".{f.extension}": f.content_type for f in accepted()}
    types[".jpg"] = "image/jpeg"
    return types
