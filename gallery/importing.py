"""Turn folders, zip archives and browser uploads into :class:`ImageUpload` items.

Names inside archives are used only for labels and messages, never as paths on disk.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from .services import ImageUpload
from .validation import InvalidImage, read_upload

MAX_ARCHIVE_ENTRIES = 20_000
MAX_ARCHIVE_TOTAL_BYTES = 20 * 1024**3


class InvalidArchive(ValueError):
    pass


def _skip(name: str) -> bool:
    """Hidden files and macOS metadata: left out quietly (nobody chose them). A ``..`` is not
    hidden: such an entry is refused with its reason."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return any((p.startswith(".") and p != "..") or p == "__MACOSX" for p in parts)


def _folder_label(parts: Sequence[str]) -> list[str]:
    return [parts[-2]] if len(parts) >= 2 else []


def uploads_from_zip(
    source, *, labels: Sequence[str], labels_from_dirs: bool, unlabelled: bool = False
) -> Iterator[ImageUpload]:
    """Entries of a zip archive (a path or a file object). Checks the archive's declared sizes
    before reading anything, so a zip bomb is refused instead of unpacked."""
    try:
        declared = _declared_entries(source)
        if declared is not None and declared > MAX_ARCHIVE_ENTRIES:
            raise InvalidArchive(f"The archive holds {declared} files; the limit is {MAX_ARCHIVE_ENTRIES}.")
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidArchive(f"The archive cannot be read: {exc}") from None
    entries = [i for i in archive.infolist() if not i.is_dir() and not _skip(i.filename)]
    if len(entries) > MAX_ARCHIVE_ENTRIES:
        raise InvalidArchive(f"The archive holds {len(entries)} files; the limit is {MAX_ARCHIVE_ENTRIES}.")
    if sum(i.file_size for i in entries) > MAX_ARCHIVE_TOTAL_BYTES:
        raise InvalidArchive("The archive unpacks to more than 20 GB.")

    def reader(info: zipfile.ZipInfo):
        def read() -> bytes:
            # One unreadable entry is refused with its reason; the others are still stored.
            try:
                with archive.open(info) as fh:
                    return read_upload(fh)  # the entry's header may lie about its size
            except NotImplementedError as exc:  # deflate64, AES, other methods zipfile lacks
                raise InvalidImage(
                    f"the entry is compressed in a way this server cannot unpack ({exc}); "
                    "zip it again with ordinary (deflate) compression."
                ) from None
            except RuntimeError as exc:  # encrypted, no password (after its subclass above)
                raise InvalidImage(f"the entry cannot be read from the archive ({exc}).") from None
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
                raise InvalidImage(f"the entry is damaged in the archive ({exc}).") from None

        return read

    counts = Counter(info.filename for info in entries)
    for info in entries:
        refused = _entry_problem(info, counts[info.filename])
        if refused is not None:
            yield ImageUpload(
                name=info.filename, size=info.file_size, read=_never, labels=(), refused=refused
            )
            continue
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        item_labels = list(labels) + (_folder_label(parts) if labels_from_dirs else [])
        yield ImageUpload(
            name=parts[-1] if parts else "entry",
            size=info.file_size,
            read=reader(info),
            labels=item_labels,
            unlabelled=unlabelled,
        )


def _declared_entries(source) -> int | None:
    """The entry count the archive's end record declares, read before ZipFile() parses the
    whole central directory into objects (millions of entries fit in an upload's body); None
    when there is no end record (ZipFile then refuses the file)."""
    fp = open(source, "rb") if isinstance(source, (str, os.PathLike)) else source  # noqa: SIM115
    try:
        position = fp.tell()
        # zipfile's own reader of the end record (zip64 included), public in all but name.
        record = zipfile._EndRecData(fp)  # noqa: SLF001
        fp.seek(position)
    finally:
        if fp is not source:
            fp.close()
    return None if record is None else int(record[zipfile._ECD_ENTRIES_TOTAL])  # noqa: SLF001


def _entry_problem(info: zipfile.ZipInfo, same_name: int) -> str | None:
    """Why an archive entry is refused as it is named (None when it is not): it is listed as
    refused with this reason, never skipped in silence."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "an absolute name; entries of an archive must be relative."
    if ".." in name.split("/"):
        return "the name climbs out of the archive with '..'."
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link; only files are imported."
    if same_name > 1:
        return f"the archive holds {same_name} entries of this name; which one is meant cannot be known."
    return None


def _never() -> bytes:
    raise AssertionError("a refused entry is never read")


def uploads_from_directory(
    root: Path, *, labels: Sequence[str], labels_from_dirs: bool
) -> Iterator[ImageUpload]:
    """Every file under ``root`` (hidden files and folders skipped), in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            path = Path(dirpath) / filename
            item_labels = list(labels) + ([path.parent.name] if labels_from_dirs else [])
            yield ImageUpload(
                name=str(path.relative_to(root)),
                size=path.stat().st_size,
                read=path.read_bytes,
                labels=item_labels,
            )


def uploads_from_files(files, *, labels: Sequence[str], unlabelled: bool = False) -> Iterator[ImageUpload]:
    """Browser uploads (Django ``UploadedFile`` objects)."""
    for f in files:
        yield ImageUpload(
            name=os.path.basename(f.name or "upload"),
            size=f.size,
            read=f.read,
            labels=list(labels),
            unlabelled=unlabelled,
        )


def uploads_from_form(cleaned_data: dict) -> list[ImageUpload]:
    """The uploads of a valid :class:`gallery.forms.BulkUploadForm` (the admin page and the
    API send the same fields): the files, then the archive's entries. Raises InvalidArchive."""
    labels = cleaned_data["labels"]
    unlabelled = cleaned_data.get("unlabelled", False)
    uploads = list(uploads_from_files(cleaned_data["files"], labels=labels, unlabelled=unlabelled))
    archive = cleaned_data.get("archive")
    if archive:
        uploads += uploads_from_zip(
            archive,
            labels=labels,
            labels_from_dirs=cleaned_data.get("labels_from_dirs", False),
            unlabelled=unlabelled,
        )
    return uploads
