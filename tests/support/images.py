"""Generated test images (never downloaded): distinct, deterministic, in any format."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def make_image(seed: int, size: tuple[int, int] = (96, 72), mode: str = "RGB") -> Image.Image:
    """A deterministic picture: a colour gradient plus shapes placed by ``seed``, so that
    different seeds give clearly different images."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-2, 2, (2, 3))
    arr = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(5, max(w, h) / 3)
        arr[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    arr += rng.normal(0, 12, arr.shape)
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return image.convert(mode) if mode != "RGB" else image


def image_bytes(
    seed: int, fmt: str = "PNG", size: tuple[int, int] = (96, 72), mode: str = "RGB", **save_args
) -> bytes:
    out = io.BytesIO()
    make_image(seed, size, mode).save(out, fmt, **save_args)
    return out.getvalue()


def phone_image_bytes(seed: int, fmt: str, size: tuple[int, int] = (96, 72), **save_args) -> bytes:
    """A picture as phones save them: ``fmt`` is ``"HEIF"`` (HEIC, written by pillow-heif) or
    ``"AVIF"`` (Pillow's own encoder)."""
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    return image_bytes(seed, fmt, size, **save_args)


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()
