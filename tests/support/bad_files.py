"""A corpus of hostile and awkward uploads, generated (never downloaded).

``REFUSED``: files the application must refuse, each with a fragment of the reason a person is
shown. ``ACCEPTED``: awkward but legitimate images it must take (and embed), each with the
format it is stored as. Every entry is built on first use and cached.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests.support.images import image_bytes, make_image, phone_image_bytes


@dataclass(frozen=True)
class Sample:
    id: str  # test id
    name: str  # the client's file name
    build: Callable[[], bytes]
    reason: str = ""  # REFUSED: a fragment of the message
    stored_as: str = ""  # ACCEPTED: the extension it is stored under

    @property
    def data(self) -> bytes:
        return _built(self.build)

    def __repr__(self) -> str:
        return self.id


@functools.cache
def _built(build: Callable[[], bytes]) -> bytes:
    return build()


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


# --- PNG by hand: headers that declare what they like ------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` RGB pixels (about 70 bytes: the
    pixel data is a few compressed bytes, so decoding it would fail after the size checks)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + png_chunk(b"IEND", b"")
    )


def png_with_text_bomb() -> bytes:
    """A real small PNG with a zTXt chunk that inflates to 64 MB (Pillow stops at 1 MB)."""
    png = image_bytes(20, "PNG", size=(16, 16))
    bomb = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * (64 * 1024 * 1024), 9))
    at = png.index(b"IDAT") - 4
    return png[:at] + bomb + png[at:]


def png_html_polyglot() -> bytes:
    """A valid PNG that is also an HTML page with a script (in a text chunk and after IEND)."""
    html = b"<html><body><script>alert(document.cookie)</script></body></html>"
    png = image_bytes(21, "PNG", size=(16, 16))
    at = png.index(b"IDAT") - 4
    return png[:at] + png_chunk(b"tEXt", b"Comment\0" + html) + png[at:] + html


# --- other formats ------------------------------------------------------------------------------


def psd() -> bytes:
    """A minimal Photoshop file: header, empty sections, raw RGB data."""
    w, h = 8, 8
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + bytes(w * h * 3)


def fits() -> bytes:
    """A minimal FITS image (astronomy): 80-character header cards in 2880-byte blocks."""
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                    8",
        "NAXIS   =                    2",
    ]
    cards += ["NAXIS1  =                    8", "NAXIS2  =                    8", "END"]
    header = "".join(c.ljust(80) for c in cards).ljust(2880).encode("ascii")
    return header + bytes(64).ljust(2880, b"\0")


def animation(fmt: str, frames: int) -> bytes:
    images = [Image.new("RGB", (2, 2), (255 * (i % 2), 40, 200)) for i in range(frames)]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    return _save(images[0], fmt, save_all=True, append_images=images[1:], duration=20, **extra)


def jpeg_with_exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return _save(make_image(22, (40, 20)), "JPEG", exif=exif.tobytes())


def jpeg_with_broken_exif() -> bytes:
    """A JPEG whose APP1 segment says "Exif" and then holds garbage."""
    jpeg = image_bytes(23, "JPEG")
    payload = b"Exif\0\0" + b"II*\0\xff\xff\xff\x7f" + bytes(range(256)) * 2
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + app1 + jpeg[2:]


def garbage(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _sixteen_bit() -> bytes:
    array = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    return _save(Image.fromarray(array), "PNG")  # uint16: mode I;16


def _palette_with_transparency() -> bytes:
    image = make_image(24, (32, 24)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _save(image, "PNG", transparency=0)


REFUSED: list[Sample] = [
    Sample("zero-bytes", "empty.png", lambda: b"", "empty"),
    Sample("truncated-jpeg", "cut.jpg", lambda: _cut(image_bytes(30, "JPEG", size=(200, 150))), "truncated"),
    Sample("truncated-png", "cut.png", lambda: _cut(image_bytes(31, "PNG", size=(200, 150))), "truncated"),
    Sample("png-header-then-garbage", "noise.png", lambda: PNG_SIGNATURE + garbage(4000, 1), "read"),
    Sample(
        "jpeg-header-then-garbage", "noise.jpg", lambda: b"\xff\xd8\xff\xe0" + garbage(4000, 2), "damaged"
    ),
    Sample("random-bytes", "random.jpg", lambda: garbage(5000, 3), "not an image we can read"),
    Sample(
        "svg-with-script",
        "vector.svg",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "not an image we can read",
    ),
    Sample("html-named-png", "page.png", lambda: b"<!doctype html><script>alert(1)</script>", "not an image"),
    Sample("pdf-named-jpg", "scan.jpg", lambda: _save(make_image(32), "PDF"), "not an image we can read"),
    Sample("eps", "figure.eps", lambda: _save(make_image(33), "EPS"), "not an image we can read"),
    Sample("psd", "layers.psd", psd, "not an image we can read"),
    Sample("fits", "galaxy.fits", fits, "not an image we can read"),
    Sample("ico", "favicon.ico", lambda: _save(make_image(34, (32, 32)), "ICO"), "not an image we can read"),
    Sample("tga", "old.tga", lambda: _save(make_image(35), "TGA"), "not an image we can read"),
    Sample("pcx", "old.pcx", lambda: _save(make_image(36), "PCX"), "not an image we can read"),
    Sample("ppm", "plain.ppm", lambda: _save(make_image(37), "PPM"), "not an image we can read"),
    Sample("jpeg2000", "photo.jp2", lambda: _save(make_image(38), "JPEG2000"), "not an image we can read"),
    Sample("elf-binary", "tool.png", lambda: b"\x7fELF\x02\x01\x01" + bytes(200), "not an image we can read"),
    Sample("zip-as-image", "photos.png", lambda: b"PK\x03\x04" + garbage(300, 4), "not an image we can read"),
    Sample("bomb-over-2x-pillow-limit", "bomb.png", lambda: png_declaring(20000, 20000), "too many pixels"),
    # Between one and two times Pillow's limit it only warns (and Django's ImageField accepts it).
    Sample("bomb-12000x12000-69-bytes", "bomb.png", lambda: png_declaring(12000, 12000), "too many pixels"),
    # Under Pillow's limit, over ours (80 megapixels).
    Sample("over-our-pixel-limit", "big.png", lambda: png_declaring(9000, 9000), "megapixels"),
    Sample("png-text-chunk-bomb", "text.png", png_with_text_bomb, "damaged"),
    Sample("gif-1500-frames", "long.gif", lambda: animation("GIF", 1500), "1500 frames"),
    Sample("webp-1500-frames", "long.webp", lambda: animation("WEBP", 1500), "1500 frames"),
    Sample("truncated-heic", "cut.heic", lambda: _cut(phone_image_bytes(50, "HEIF", (200, 150))), "damaged"),
    Sample("truncated-avif", "cut.avif", lambda: _cut(phone_image_bytes(51, "AVIF", (200, 150))), "read"),
]

ACCEPTED: list[Sample] = [
    Sample("cmyk-jpeg", "print.jpg", lambda: image_bytes(40, "JPEG", mode="CMYK"), stored_as="jpg"),
    Sample("sixteen-bit-png", "depth.png", _sixteen_bit, stored_as="png"),
    Sample("palette-with-transparency", "icon.png", _palette_with_transparency, stored_as="png"),
    Sample("greyscale", "grey.png", lambda: image_bytes(41, "PNG", mode="L"), stored_as="png"),
    Sample("greyscale-alpha", "grey-alpha.png", lambda: image_bytes(42, "PNG", mode="LA"), stored_as="png"),
    Sample("one-bit-tiff", "fax.tiff", lambda: image_bytes(43, "TIFF", mode="1"), stored_as="tiff"),
    Sample("exif-rotated", "rotated.jpg", lambda: jpeg_with_exif_orientation(6), stored_as="jpg"),
    Sample("exif-orientation-0", "zero.jpg", lambda: jpeg_with_exif_orientation(0), stored_as="jpg"),
    Sample("exif-orientation-999", "odd.jpg", lambda: jpeg_with_exif_orientation(999), stored_as="jpg"),
    Sample("exif-garbage", "broken-exif.jpg", jpeg_with_broken_exif, stored_as="jpg"),
    Sample(
        "one-pixel", "dot.png", lambda: _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), stored_as="png"
    ),
    Sample("100000x1", "line.png", lambda: image_bytes(44, "PNG", size=(100_000, 1)), stored_as="png"),
    Sample("1x100000", "column.png", lambda: image_bytes(45, "PNG", size=(1, 100_000)), stored_as="png"),
    Sample("short-animated-gif", "wave.gif", lambda: animation("GIF", 3), stored_as="gif"),
    Sample("png-named-jpg", "lying.jpg", lambda: image_bytes(46, "PNG"), stored_as="png"),
    Sample("jpeg-named-html", "page.html", lambda: image_bytes(47, "JPEG"), stored_as="jpg"),
    Sample("png-html-polyglot", "polyglot.png", png_html_polyglot, stored_as="png"),
    Sample("bmp", "old.bmp", lambda: image_bytes(48, "BMP"), stored_as="bmp"),
    Sample("webp", "modern.webp", lambda: image_bytes(49, "WEBP"), stored_as="webp"),
    Sample("heic", "IMG_0001.HEIC", lambda: phone_image_bytes(52, "HEIF"), stored_as="heic"),
    Sample("avif", "phone.avif", lambda: phone_image_bytes(53, "AVIF"), stored_as="avif"),
    Sample("png-named-heic", "lying.heic", lambda: image_bytes(54, "PNG"), stored_as="png"),
]
