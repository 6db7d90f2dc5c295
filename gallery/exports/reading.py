"""Reading an export back (``import_images``): validate it whole, then turn it into uploads.

The whole manifest and every file (size and SHA-256) are checked before anything is stored: a
damaged or hand-edited export is refused with every problem listed, and nothing is imported. Image
vectors made by the configured model are stored with the rows, so the embedding pipeline finds
them and skips the image model (only label vectors and hybrids are computed); vectors of another
model or dimension are left out, and those images are embedded again.
"""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model

from ..models import Image
from ..services import ImageUpload
from ..validation import InvalidImage
from .manifest import MANIFEST_NAME, ExportEntry, InvalidExport, manifest_parse


class _FolderSource:
    def __init__(self, root: Path):
        self.root = root

    def manifest(self) -> bytes:
        return _read_regular_file(self.root, MANIFEST_NAME, limit=None)

    def problem(self, name: str) -> str | None:
        try:
            _regular_file(self.root, name)
        except InvalidImage as exc:
            return str(exc)
        return None

    def read(self, name: str, size: int) -> bytes:
        return _read_regular_file(self.root, name, limit=size + 1)

    def files(self) -> set[str]:
        found = set()
        for dirpath, _, filenames in os.walk(self.root):
            for filename in filenames:
                found.add((Path(dirpath) / filename).relative_to(self.root).as_posix())
        return found

    def close(self) -> None:
        pass


def _regular_file(root: Path, name: str) -> Path:
    """``root/name`` if it is a regular file reached without following a symbolic link."""
    path = root
    for part in PurePosixPath(name).parts:
        path = path / part
        try:
            mode = path.lstat().st_mode
        except OSError:
            raise InvalidImage(f"{name} is missing from the export.") from None
        if stat.S_ISLNK(mode):
            raise InvalidImage(f"{name} is a symbolic link in the export.")
    if not stat.S_ISREG(mode):
        raise InvalidImage(f"{name} is not a file in the export.")
    return path


def _read_regular_file(root: Path, name: str, *, limit: int | None) -> bytes:
    path = _regular_file(root, name)
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW)) as fh:
            return fh.read() if limit is None else fh.read(limit)
    except OSError as exc:
        raise InvalidImage(f"{name} cannot be read ({exc.strerror or exc}).") from None


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


class _ZipSource:
    def __init__(self, path: Path):
        try:
            self.archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise InvalidExport([f"the archive cannot be read ({exc})"]) from None
        self.entries: dict[str, list[zipfile.ZipInfo]] = {}
        for info in self.archive.infolist():
            self.entries.setdefault(info.filename, []).append(info)

    def _info(self, name: str) -> zipfile.ZipInfo:
        infos = self.entries.get(name, [])
        if not infos:
            raise InvalidImage(f"{name} is missing from the export.")
        if len(infos) > 1:
            raise InvalidImage(f"{name} appears {len(infos)} times in the archive.")
        info = infos[0]
        if _zip_is_symlink(info):
            raise InvalidImage(f"{name} is a symbolic link in the archive.")
        if info.is_dir():
            raise InvalidImage(f"{name} is not a file in the archive.")
        return info

    def manifest(self) -> bytes:
        return self._read(self._info(MANIFEST_NAME), None)

    def problem(self, name: str) -> str | None:
        try:
            self._info(name)
        except InvalidImage as exc:
            return str(exc)
        return None

    def read(self, name: str, size: int) -> bytes:
        return self._read(self._info(name), size + 1)

    def _read(self, info: zipfile.ZipInfo, limit: int | None) -> bytes:
        try:
            with self.archive.open(info) as fh:
                return fh.read() if limit is None else fh.read(limit)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
            raise InvalidImage(f"{info.filename} cannot be read from the archive ({exc}).") from None

    def files(self) -> set[str]:
        return {name for name, infos in self.entries.items() if not infos[0].is_dir()}

    def close(self) -> None:
        self.archive.close()


def export_detect(path: Path) -> bool:
    """Whether ``path`` is an export (a folder or zip holding :data:`MANIFEST_NAME`), which
    ``import_images`` reads with its manifest instead of as a plain folder or archive."""
    if path.is_dir():
        return os.path.lexists(path / MANIFEST_NAME)
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return any(info.filename == MANIFEST_NAME for info in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return False
    return False


@dataclass
class LibraryExport:
    """A validated export: every entry's manifest data, and its files checked (size, SHA-256)."""

    path: Path
    entries: list[ExportEntry]
    source: _FolderSource | _ZipSource
    unlisted: list[str]  # files in the export that the manifest does not name (ignored)

    def read(self, entry: ExportEntry) -> bytes:
        data = self.source.read(entry.file, entry.size)
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise InvalidImage(f"{entry.file} changed after the export was verified.")
        return data

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> LibraryExport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def export_open(
    path: Path, *, extra_labels: Sequence[str] = (), on_progress: Callable[[], None] | None = None
) -> LibraryExport:
    """Read and validate an export: the whole manifest, then every file it names (present,
    the declared size, the declared SHA-256). Raises :class:`InvalidExport` with every problem
    found; nothing is stored either way. ``on_progress`` is called once per file checked."""
    source: _FolderSource | _ZipSource = _FolderSource(path) if path.is_dir() else _ZipSource(path)
    try:
        try:
            raw = source.manifest()
        except InvalidImage as exc:
            raise InvalidExport([str(exc)]) from None
        entries, problems = manifest_parse(raw, extra_labels=extra_labels)
        for entry in entries:
            problem = source.problem(entry.file)
            if problem is None:
                try:
                    data = source.read(entry.file, entry.size)
                except InvalidImage as exc:
                    problem = str(exc)
                else:
                    if len(data) != entry.size:
                        problem = (
                            f"{entry.file}: the file's size differs from the manifest's {entry.size} bytes."
                        )
                    elif hashlib.sha256(data).hexdigest() != entry.sha256:
                        problem = f"{entry.file}: the file's SHA-256 does not match the manifest."
            if problem is not None:
                problems.append(problem)
            if on_progress is not None:
                on_progress()
        if problems:
            raise InvalidExport(problems)
        listed = {entry.file for entry in entries} | {MANIFEST_NAME}
        unlisted = sorted(source.files() - listed)
    except BaseException:
        source.close()
        raise
    return LibraryExport(path=path, entries=entries, source=source, unlisted=unlisted)


@dataclass
class VectorCounts:
    reused: int = 0  # made by the configured model: stored, the image model skips them
    ignored: int = 0  # made by another model or of another dimension: embedded again


def export_uploads(export: LibraryExport) -> tuple[list[ImageUpload], VectorCounts]:
    """The uploads for :func:`gallery.services.images_create`: each with its manifest labels,
    upload time and uploader (when a user of that name exists here), and its image vector when
    the configured model made it."""
    model = settings.IMAGESEARCH_CLIP_MODEL
    dimension = _known_dimension(model)
    counts = VectorCounts()
    users = _users_by_name({e.uploaded_by for e in export.entries if e.uploaded_by})
    uploads = []
    for entry in export.entries:
        vector = entry.vector
        if vector is not None and (vector.model != model or dimension not in (None, vector.dimension)):
            counts.ignored += 1
            vector = None
        elif vector is not None:
            counts.reused += 1
        uploads.append(
            ImageUpload(
                name=entry.name,
                size=entry.size,
                read=_reader(export, entry),
                labels=entry.labels,
                uploaded_at=entry.uploaded_at,
                taken=entry.taken,
                uploader=users.get(entry.uploaded_by or ""),
                image_vector=vector.data if vector is not None else None,
                embedding_model=vector.model if vector is not None else "",
            )
        )
    return uploads, counts


def _reader(export: LibraryExport, entry: ExportEntry) -> Callable[[], bytes]:
    return lambda: export.read(entry)


def _known_dimension(model: str) -> int | None:
    """The dimension of the image vectors this library holds from ``model``, if it holds any.
    (With none yet, the pipeline checks each stored vector against the model it loads.)"""
    blob = (
        Image.objects.filter(embedding_model=model, image_vector__isnull=False)
        .values_list("image_vector", flat=True)
        .first()
    )
    return len(bytes(blob)) // 4 if blob is not None else None


def _users_by_name(names: set[str]) -> dict[str, Any]:
    if not names:
        return {}
    user_model = get_user_model()
    field_name = user_model.USERNAME_FIELD
    return {user.get_username(): user for user in user_model.objects.filter(**{f"{field_name}__in": names})}
