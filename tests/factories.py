"""Creating images through the real upload service (and indexing them), for tests."""

from __future__ import annotations

from gallery.services import ImageUpload, images_create
from search.ingest import pipeline, rebuild
from tests.support.images import image_bytes


def upload(data: bytes, labels: list[str], name: str = "photo.png") -> ImageUpload:
    return ImageUpload(name=name, size=len(data), read=lambda: data, labels=labels)


def create_images(specs: list[tuple[int, list[str]]], fmt: str = "PNG") -> list[int]:
    """Create one image per (seed, labels) and return their ids (in order)."""
    result = images_create(
        uploads=[upload(image_bytes(seed, fmt), labels, f"img{seed}.png") for seed, labels in specs]
    )
    assert not result.refused, result.refused
    return result.added


def create_indexed_images(specs: list[tuple[int, list[str]]]) -> list[int]:
    """:func:`create_images`, then embedded and indexed by this process (no worker)."""
    ids = create_images(specs)
    pipeline.images_embed(image_ids=ids)
    rebuild.index_rebuild()
    return ids


def indexed_library(specs: list[tuple[int, list[str]]]) -> dict[str, list[int]]:
    """:func:`create_indexed_images`, and their ids by label (in order) and under ``"all"``."""
    ids = create_indexed_images(specs)
    library: dict[str, list[int]] = {"all": ids}
    for pk, (_, labels) in zip(ids, specs, strict=True):
        for label in labels:
            library.setdefault(label, []).append(pk)
    return library
