"""The index directory's files: names, atomic publication, the ``CURRENT`` pointer.

Every file reaches its final name the same way: written to a temporary name, fsynced and
``os.replace``d, then the directory fsynced by the caller. A reader therefore never sees a
partial file under a final name, and a crash at any point leaves the previous state.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Union

from .errors import InvalidGeneration

PathLike = Union[str, "os.PathLike[str]"]

CURRENT_NAME = "CURRENT"
TMP_PREFIX = ".tmp-"
GEN_RE = re.compile(r"^gen-(\d{6,})(?:-picture)?\.(faiss|json)$")
_HASH_CHUNK = 1 << 20


def index_name(generation: int) -> str:
    return f"gen-{generation:06d}.faiss"


def picture_name(generation: int) -> str:
    """The generation's second index: the same rows' image vectors alone."""
    return f"gen-{generation:06d}-picture.faiss"


def manifest_name(generation: int) -> str:
    return f"gen-{generation:06d}.json"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_tmp_path(directory: Path, final_name: str) -> Path:
    """Create an empty, uniquely named temporary file (mode 0666 & ~umask)."""
    while True:
        path = directory / f"{TMP_PREFIX}{final_name}.{secrets.token_hex(6)}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        os.close(fd)
        return path


def sha256_fd(fd: int) -> str:
    digest = hashlib.sha256()
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        n = os.readv(fd, [buf])
        if not n:
            break
        digest.update(view[:n])
    return digest.hexdigest()


def publish_file(directory: Path, final_name: str, fill: Callable[[Path], None]) -> tuple[int, str]:
    """Have ``fill`` write a temp file, fsync it and ``os.replace`` it to ``final_name``.

    Returns the published file's size and sha256 (read back from the fsynced file). On any
    failure the temp file is removed and the error raised; ``final_name`` is untouched.
    """
    tmp = new_tmp_path(directory, final_name)
    try:
        fill(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
            size = os.fstat(fd).st_size
            sha256 = sha256_fd(fd)
        finally:
            os.close(fd)
        os.replace(tmp, directory / final_name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return size, sha256


def publish_bytes(directory: Path, final_name: str, data: bytes) -> None:
    """Write ``data`` to a temp file, fsync it and ``os.replace`` it to ``final_name``."""
    tmp = new_tmp_path(directory, final_name)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / final_name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def publish_pointer(directory: Path, generation: int) -> None:
    """Move ``CURRENT`` to ``generation`` (its files must already be published and durable)."""
    publish_bytes(directory, CURRENT_NAME, f"{generation}\n".encode("ascii"))
    fsync_dir(directory)


def read_pointer(directory: Path) -> int | None:
    """Generation named by ``CURRENT``; ``None`` if there is none. Raises InvalidGeneration."""
    try:
        text = (directory / CURRENT_NAME).read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidGeneration(f"cannot read {CURRENT_NAME}: {exc}") from exc
    text = text.strip()
    if not text.isdigit() or int(text) < 1:
        raise InvalidGeneration(f"{CURRENT_NAME} does not name a generation: {text[:40]!r}")
    return int(text)


def existing_generations(directory: Path) -> set[int]:
    """Generations with at least one file on disk (complete or not)."""
    found: set[int] = set()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            match = GEN_RE.match(entry.name)
            if match:
                found.add(int(match.group(1)))
    return found
