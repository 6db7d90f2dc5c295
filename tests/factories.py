"""Creating images through the real upload service, for tests."""

from __future__ import annotations

from gallery.services import ImageUpload, images_create
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
