"""Verifying a generation's index file before it is served: checksum, size, what faiss reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import InvalidGeneration
from .faiss_lib import import_faiss
from .files import sha256_fd
from .kinds import Kind


def read_verified(path: Path, *, size_bytes: int, sha256: str, spec: Kind) -> Any:
    """Load the index file at ``path`` with faiss if its size and sha256 are the manifest's
    (``size_bytes``, ``sha256``) and the name still refers to that file once loaded; raise
    InvalidGeneration otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise InvalidGeneration(f"index file {path.name} is missing") from exc
    except OSError as exc:
        raise InvalidGeneration(f"cannot open {path.name}: {exc}") from exc
    try:
        st = os.fstat(fd)
        if st.st_size != size_bytes:
            raise InvalidGeneration(
                f"index file {path.name} has {st.st_size} bytes, manifest says {size_bytes}"
            )
        try:
            digest = sha256_fd(fd)
        except OSError as exc:
            raise InvalidGeneration(f"cannot read {path.name}: {exc}") from exc
        if digest != sha256:
            raise InvalidGeneration(f"index file {path.name} checksum mismatch")
        faiss = import_faiss()
        try:
            index = faiss.read_index(str(path), spec.io_flags(faiss))
        except (RuntimeError, MemoryError) as exc:
            raise InvalidGeneration(f"faiss cannot read {path.name}: {exc}") from exc
        # The name must still refer to the file we hashed.
        try:
            st2 = os.stat(path)
        except OSError as exc:
            raise InvalidGeneration(f"{path.name} vanished while loading") from exc
        if (st2.st_ino, st2.st_dev) != (st.st_ino, st.st_dev):
            raise InvalidGeneration(f"{path.name} was replaced while loading")
    finally:
        os.close(fd)
    return index


def check_loaded(faiss: Any, spec: Kind, index: Any, *, dim: int, count: int) -> None:
    """Raise InvalidGeneration unless ``index`` is of the manifest's kind, ``dim`` and ``count``."""
    problem = spec.check(faiss, index)
    if problem:
        raise InvalidGeneration(problem)
    if index.d != dim:
        raise InvalidGeneration(f"index dimension {index.d}, manifest says {dim}")
    if index.ntotal != count:
        raise InvalidGeneration(f"index holds {index.ntotal} vectors, manifest says {count}")
