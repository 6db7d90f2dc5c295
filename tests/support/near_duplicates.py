"""Near-duplicate test images: originals and the copies people make of them (re-encoded,
resized, cropped a little), stored through the upload service, embedded, indexed and scanned.

The tiny random test model is no judge of what "the same picture" means, but its copies stay
closer than 0.997 to their originals while the originals chosen here are at most 0.95 from one
another (measured with that model when they were chosen), so the tests use a threshold of 0.98,
between the two.
"""

from __future__ import annotations

import io

from PIL import Image as PILImage

from gallery.models import Image
from gallery.services import images_create
from search.duplicates import scan as duplicates
from search.ingest import pipeline, rebuild
from tests.factories import upload
from tests.support.images import make_image

SIZE = (192, 144)
#: Originals whose tiny-model vectors are far apart (cosine <= 0.95).
SEEDS = {"kestrel": 1009, "harbour": 1021, "orchard": 1003, "tram": 1001}
TEST_THRESHOLD = 0.98


def _encoded(image: PILImage.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def copies(name: str) -> dict[str, bytes]:
    """The original (PNG) and what people make of it: re-encoded, resized, cropped a little."""
    original = make_image(SEEDS[name], SIZE)
    w, h = SIZE
    return {
        f"{name}.png": _encoded(original, "PNG"),
        f"{name}-q60.jpg": _encoded(original, "JPEG", quality=60),
        f"{name}-half.png": _encoded(original.resize((w // 2, h // 2), PILImage.Resampling.LANCZOS), "PNG"),
        f"{name}-cropped.jpg": _encoded(original.crop((5, 4, w - 5, h - 4)), "JPEG", quality=85),
    }


def store(files: dict[str, bytes], label: str) -> dict[str, int]:
    names = list(files)
    result = images_create(uploads=[upload(files[n], [label], n) for n in names])
    assert not result.refused and not result.duplicates
    return dict(zip(names, result.added, strict=True))


def near_duplicate_library() -> dict[str, dict[str, int]]:
    """Two originals with three copies each, and two originals alone: stored, embedded,
    indexed and scanned (with the threshold setting in force), by this process. Ids by
    original, then by file name."""
    stored = {
        "kestrel": store(copies("kestrel"), "kestrel"),
        "harbour": store(copies("harbour"), "harbour"),
        "orchard": store({"orchard.png": copies("orchard")["orchard.png"]}, "orchard"),
        "tram": store({"tram.png": copies("tram")["tram.png"]}, "tram"),
    }
    all_ids = [pk for ids in stored.values() for pk in ids.values()]
    pipeline.images_embed(image_ids=all_ids)
    assert Image.objects.ready().count() == len(all_ids)
    rebuild.index_rebuild()
    report = duplicates.duplicates_scan()
    assert report.scanned and report.images == len(all_ids)
    return stored
