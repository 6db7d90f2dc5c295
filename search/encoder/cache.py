"""Where an ONNX export of a model lives, and making one in a child process: no torch here.

The export (:mod:`search.encoder.export`) is cached beside the model, in
``<model directory>/onnx-runtime/<key>/`` (or, where that directory is not writable, under
``<fallback root>/<model>/<key>/``), the key a hash of the model's files (their names, sizes and
modification times) and of the export format's version: a changed model gets a new key and is
exported again. ``export.json`` is written last: a directory holding it is complete.

A process that finds no export runs ``python -m search.encoder.export`` in a child process
(:func:`export_in_subprocess`), so that a web process never imports torch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import ModelUnavailable, hub_reachable, not_here

logger = logging.getLogger(__name__)

#: Bump when the exported files change: every cached export is made again.
FORMAT_VERSION = 1
CACHE_DIR_NAME = "onnx-runtime"
MANIFEST = "export.json"
REASON_PREFIX = "export refused: "
UNAVAILABLE_EXIT = 3


class ExportFailed(ModelUnavailable):
    """The model loaded in torch but its ONNX export failed; the message says why."""


def resolve_model_dir(name: str) -> Path | None:
    """The local directory of ``name`` (a directory, or a hub name already in the local cache,
    with sentence-transformers' ``sentence-transformers/`` prefix for a bare name); None when it
    is not here. Never touches the network."""
    if os.path.isdir(name):
        return Path(name).resolve()
    from huggingface_hub import snapshot_download

    candidates = [name] if "/" in name else [f"sentence-transformers/{name}", name]
    for repo_id in candidates:
        try:
            return Path(snapshot_download(repo_id, local_files_only=True))
        except Exception:  # noqa: BLE001 - not in the cache under this name
            continue
    return None


def model_key(model_dir: Path) -> str:
    """A hash of the model's files (relative path, size, modification time) and of the export
    format: a changed model, or a changed export, gets another key."""
    digest = hashlib.sha256(f"format {FORMAT_VERSION}\n".encode())
    for path in sorted(_model_files(model_dir)):
        stat = path.stat()  # follows the hub cache's symlinks to the blobs
        digest.update(f"{path.relative_to(model_dir)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _model_files(model_dir: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(model_dir, followlinks=True):
        dirs[:] = [d for d in dirs if d != CACHE_DIR_NAME and not d.startswith(".")]
        for file in files:
            if not file.startswith("."):
                yield Path(root) / file


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[-80:] or "model"


def cache_dirs(model_dir: Path, name: str, fallback_root: Path) -> list[Path]:
    """Where an export of this model may live, in the order they are looked at."""
    key = model_key(model_dir)
    return [model_dir / CACHE_DIR_NAME / key, Path(fallback_root) / _slug(name) / key]


def read_manifest(export_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((export_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format_version") == FORMAT_VERSION else None


def find_export(name: str, fallback_root: Path) -> Path | None:
    """The complete export of the model ``name`` as its files are now, or None."""
    model_dir = resolve_model_dir(name)
    if model_dir is None:
        return None
    for directory in cache_dirs(model_dir, name, fallback_root):
        if read_manifest(directory) is not None:
            return directory
    return None


@contextlib.contextmanager
def _export_lock(name: str, fallback_root: Path) -> Iterator[None]:
    """One export of a model at a time on this machine (web processes and workers start at once)."""
    root = Path(fallback_root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{_slug(name)}.export.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def export_in_subprocess(name: str, fallback_root: Path, *, setting: str, timeout: float = 3600) -> Path:
    """The export of ``name``, made in a child process when there is none (torch loads there, not
    here). ExportFailed (or ModelUnavailable) with the child's reason when it cannot be made."""
    found = find_export(name, fallback_root)
    if found is not None:
        return found
    if resolve_model_dir(name) is None and not hub_reachable():
        raise not_here(name, setting)  # what the child would say, without starting torch for it
    with _export_lock(name, fallback_root):
        found = find_export(name, fallback_root)  # another process made it while we waited
        if found is not None:
            return found
        command = [sys.executable, "-m", "search.encoder.export", name, "--fallback-root", str(fallback_root)]
        command += ["--setting", setting]
        # The child's command line is not logged: ./run's output names only commands a user types.
        logger.info("exporting %s to ONNX, once per model, in a child process (search.encoder.export)", name)
        try:
            done = subprocess.run(
                command,
                cwd=Path(__file__).resolve().parents[2],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ExportFailed(
                f"The ONNX export of {name!r} did not finish within {timeout:.0f} s."
            ) from None
        if done.returncode != 0:
            reason = _last_error_line(done.stderr) or f"exit status {done.returncode}"
            if done.returncode == UNAVAILABLE_EXIT:
                raise ModelUnavailable(reason)
            raise ExportFailed(f"The ONNX export of {name!r} failed: {reason}")
    found = find_export(name, fallback_root)
    if found is None:
        raise ExportFailed(f"The ONNX export of {name!r} finished but left no complete export.")
    return found


def _last_error_line(stderr: str) -> str:
    for line in reversed(stderr.strip().splitlines()):
        if line.startswith(REASON_PREFIX):
            return line[len(REASON_PREFIX) :].strip()
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# --- int8 ---------------------------------------------------------------------------------------


def int8_graph(export_dir: Path, tower: str) -> Path:
    """``<tower>.int8.onnx``: the fp32 graph with dynamically quantised (int8) weights, made once
    (onnxruntime's quantiser: no torch)."""
    target = export_dir / f"{tower}.int8.onnx"
    if target.is_file():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    staging = export_dir / f".{tower}.int8.{os.getpid()}.onnx"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs advice on the root logger, once per graph
    try:
        quantize_dynamic(str(export_dir / f"{tower}.onnx"), str(staging), weight_type=QuantType.QInt8)
        os.chmod(staging, 0o644)
        os.replace(staging, target)
    finally:
        root.setLevel(level)
        staging.unlink(missing_ok=True)
    return target
