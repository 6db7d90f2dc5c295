"""Building a test model directory once, atomically (used by clip_model.py, and by any other test
model builder in the sentence-transformers layout).

A model is written into a temporary sibling directory with a marker file naming what was built
(format version, size, seed, ...), then renamed into place, so a concurrent reader or builder never
sees a half-written model, and a build with the same marker is reused as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_marker(path: Path, marker_file: str) -> dict[str, Any] | None:
    try:
        data = json.loads((path / marker_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_complete(path: Path, marker: dict[str, Any], marker_file: str) -> bool:
    return (path / "modules.json").is_file() and read_marker(path, marker_file) == marker


def build_model_dir(
    path: Path, marker: dict[str, Any], marker_file: str, write: Callable[[Path], None]
) -> Path:
    """``path`` holding the model that ``write(empty_dir)`` writes and ``marker`` describes.

    A complete build with the same marker is returned untouched; a build with another marker is
    replaced; any other non-empty directory is refused (FileExistsError) rather than overwritten.
    """
    path = Path(path)
    if _is_complete(path, marker, marker_file):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.building-", dir=path.parent))
    try:
        write(staging)
        (staging / marker_file).write_text(
            json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        _move_into_place(staging, path, marker, marker_file)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return path


def _move_into_place(staging: Path, path: Path, marker: dict[str, Any], marker_file: str) -> None:
    """Atomically rename ``staging`` to ``path``, replacing an empty dir or a stale build."""
    for _ in range(3):
        try:
            # rename(2) replaces a missing or empty directory atomically, and fails on a
            # non-empty one, so two concurrent builders cannot clobber each other.
            os.rename(staging, path)
            return
        except OSError:
            if _is_complete(path, marker, marker_file):
                return  # Another process finished the same build first.
            if not path.is_dir():
                raise
        if read_marker(path, marker_file) is None:
            raise FileExistsError(
                f"{path} exists and was not written by a test model builder; refusing to overwrite it"
            )
        # A stale build of ours (other size, seed or format): move it aside, then retry.
        trash = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            continue  # Someone else moved it already.
        shutil.rmtree(trash, ignore_errors=True)
    raise OSError(f"could not move the built model into {path}")
