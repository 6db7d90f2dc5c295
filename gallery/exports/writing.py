"""Writing the whole library to a folder or a zip archive (``export_images``).

An export is written under a temporary ``.part`` name, fsynced, and renamed when complete, so an
interrupted export never looks complete, and it never overwrites anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.core.files.storage import default_storage
from django.utils import timezone

from ..models import Image
from .manifest import _EXTENSION, FORMAT, FORMAT_VERSION, MANIFEST_NAME, VECTOR_ENCODING


class ExportRefused(Exception):
    """The export cannot be written where asked; the message says why."""


def export_is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip"


def export_target_check(path: Path) -> None:
    """Refuse a target that holds something: an export never overwrites anything."""
    if path.is_symlink():
        raise ExportRefused(f"{path} is a symbolic link; give a new path.")
    if not path.exists():
        if not path.parent.is_dir():
            raise ExportRefused(f"The folder {path.parent} does not exist.")
        return
    if export_is_zip(path):
        if not path.is_file():
            raise ExportRefused(f"{path} exists and is not a file.")
        if path.stat().st_size:
            raise ExportRefused(f"{path} already exists; an export never overwrites a file.")
    else:
        if not path.is_dir():
            raise ExportRefused(f"{path} exists and is not a folder (a .zip path writes an archive).")
        if any(path.iterdir()):
            raise ExportRefused(f"The folder {path} is not empty; an export needs a new or empty folder.")


@dataclass
class ExportReport:
    path: Path
    exported: int = 0
    vectors: int = 0
    bytes: int = 0
    not_exported: list[tuple[str, str]] = field(default_factory=list)  # (image, reason)


class _FolderTarget:
    def __init__(self, path: Path):
        self.path = path
        self.part = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{path.name}.", suffix=".part"))

    def add(self, name: str, data: bytes) -> None:
        target = self.part / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def manifest_file(self) -> IO[str]:
        return open(self.part / MANIFEST_NAME, "x", encoding="utf-8")

    def close_manifest(self, fh: IO[str]) -> None:
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()

    def publish(self) -> None:
        _fsync_tree(self.part)
        export_target_check(self.path)  # again: something may have appeared meanwhile
        os.replace(self.part, self.path)  # over an empty folder too
        _fsync_dir(self.path.parent)

    def abort(self) -> None:
        shutil.rmtree(self.part, ignore_errors=True)


class _ZipTarget:
    def __init__(self, path: Path):
        self.path = path
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".part")
        os.close(fd)
        self.part = Path(name)
        self.archive = zipfile.ZipFile(self.part, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._manifest: IO[str] | None = None

    def add(self, name: str, data: bytes) -> None:
        # Images are compressed already; storing them keeps the export as fast as a copy.
        self.archive.writestr(name, data, compress_type=zipfile.ZIP_STORED)

    def manifest_file(self) -> IO[str]:
        # zipfile writes one member at a time: the manifest goes to a temporary file first.
        self._manifest = tempfile.TemporaryFile("w+", encoding="utf-8", dir=self.path.parent)
        return self._manifest

    def close_manifest(self, fh: IO[str]) -> None:
        fh.flush()
        fh.seek(0)
        info = zipfile.ZipInfo(MANIFEST_NAME, date_time=timezone.now().timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        with self.archive.open(info, "w", force_zip64=True) as dst:
            while chunk := fh.read(1 << 20):
                dst.write(chunk.encode("utf-8"))
        fh.close()

    def publish(self) -> None:
        self.archive.close()
        with open(self.part, "rb") as fh:
            os.fsync(fh.fileno())
        export_target_check(self.path)
        os.replace(self.part, self.path)
        _fsync_dir(self.path.parent)

    def abort(self) -> None:
        try:
            self.archive.close()
        except Exception:  # noqa: BLE001 - the half-written archive is deleted anyway
            pass
        if self._manifest is not None:
            self._manifest.close()
        self.part.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, _ in os.walk(root):
        _fsync_dir(Path(dirpath))


class _ManifestWriter:
    """Writes the manifest one image at a time, so a large library is never held in memory."""

    def __init__(self, fh: IO[str], header: dict[str, Any]):
        self.fh = fh
        fh.write("{\n")
        for key, value in header.items():
            fh.write(f"  {json.dumps(key)}: {json.dumps(value)},\n")
        fh.write('  "images": [')
        self.count = 0

    def add(self, entry: dict[str, Any]) -> None:
        self.fh.write(("\n    " if not self.count else ",\n    ") + json.dumps(entry, ensure_ascii=False))
        self.count += 1

    def finish(self, footer: dict[str, Any]) -> None:
        self.fh.write("\n  ]")
        for key, value in footer.items():
            self.fh.write(f",\n  {json.dumps(key)}: {json.dumps(value)}")
        self.fh.write("\n}\n")


def _export_name(image: Image, sha256: str) -> str:
    ext = PurePosixPath(image.file.name).suffix.lstrip(".").lower()
    return f"images/{sha256[:2]}/{sha256}.{ext if _EXTENSION.fullmatch(ext) else 'bin'}"


def _vector_entry(image: Image) -> dict[str, Any] | None:
    if image.image_vector is None or not image.embedding_model:
        return None
    blob = bytes(image.image_vector)
    if not blob or len(blob) % 4:
        return None
    return {
        "model": image.embedding_model,
        "dimension": len(blob) // 4,
        "encoding": VECTOR_ENCODING,
        "data": base64.b64encode(blob).decode("ascii"),
    }


def library_export(
    *, path: Path, with_vectors: bool = False, on_progress: Callable[[], None] | None = None
) -> ExportReport:
    """Write every image (oldest first) and the manifest to ``path``: a folder, or a zip archive
    when the path ends in ``.zip``. Files are read through Django's storage. An image whose file
    is missing or no longer matches its SHA-256 is left out and listed in the report."""
    export_target_check(path)
    target: _FolderTarget | _ZipTarget = _ZipTarget(path) if export_is_zip(path) else _FolderTarget(path)
    report = ExportReport(path=path)
    try:
        manifest_fh = target.manifest_file()
        manifest = _ManifestWriter(
            manifest_fh,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "exported_at": timezone.now().isoformat(),
                "with_vectors": with_vectors,
            },
        )
        for image in _images_for_export(with_vectors=with_vectors):
            entry = _image_export(image, target=target, with_vectors=with_vectors, report=report)
            if entry is not None:
                manifest.add(entry)
            if on_progress is not None:
                on_progress()
        manifest.finish({"image_count": report.exported, "vector_count": report.vectors})
        target.close_manifest(manifest_fh)
        target.publish()
    except BaseException:
        target.abort()
        raise
    return report


def _images_for_export(*, with_vectors: bool) -> Iterator[Image]:
    images = Image.objects.order_by("pk").select_related("uploaded_by").prefetch_related("labels")
    images = images.defer("hybrid_vector") if with_vectors else images.without_vectors()
    return images.iterator(chunk_size=500)


def _image_export(
    image: Image, *, target: _FolderTarget | _ZipTarget, with_vectors: bool, report: ExportReport
) -> dict[str, Any] | None:
    what = f"image {image.pk} ({image.original_name or image.file.name})"
    try:
        with default_storage.open(image.file.name, "rb") as fh:
            data = fh.read()
    except (OSError, ValueError) as exc:
        report.not_exported.append((what, f"its file {image.file.name} cannot be read ({exc})."))
        return None
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 != image.sha256:
        report.not_exported.append((what, f"its file {image.file.name} no longer matches its SHA-256."))
        return None
    name = _export_name(image, sha256)
    target.add(name, data)
    entry: dict[str, Any] = {
        "file": name,
        "name": image.original_name,
        "sha256": sha256,
        "size": len(data),
        "content_type": image.content_type,
        "labels": image.label_names,
        "uploaded_at": image.uploaded_at.isoformat() if image.uploaded_at else None,
        "uploaded_by": image.uploaded_by.get_username() if image.uploaded_by else None,
        # The camera's wall time, with its offset when it gave one (gallery.dates).
        "taken_at": image.taken.local().isoformat() if image.taken else None,
    }
    if with_vectors and (vector := _vector_entry(image)) is not None:
        entry["image_vector"] = vector
        report.vectors += 1
    report.exported += 1
    report.bytes += len(data)
    return entry
