"""The export's manifest: its format, and parsing it with every problem listed.

:data:`MANIFEST_NAME` is a JSON document with a format version that lists, for each image, its
file in the export, labels, SHA-256, size, upload time, uploader and, optionally, its image vector
with the model that made it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from django.utils import timezone

from ..dates import TakenAt
from ..labels import InvalidLabels, clean_label_names
from ..vectors import from_bytes

MANIFEST_NAME = "imagesearch-export.json"
FORMAT = "imagesearch-export"
FORMAT_VERSION = 1
#: How an image vector is written in the manifest: its float32 little-endian bytes, in base64.
VECTOR_ENCODING = "float32-le-base64"

MAX_LISTED_PROBLEMS = 50  # a thoroughly broken manifest is summarised, not printed in full

_SHA256 = re.compile(r"[0-9a-f]{64}")
_EXTENSION = re.compile(r"[a-z0-9]{1,10}")


class InvalidExport(ValueError):
    """The export cannot be imported; ``problems`` lists every reason found."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        shown = self.problems[:MAX_LISTED_PROBLEMS]
        more = len(self.problems) - len(shown)
        lines = [f"  {p}" for p in shown] + ([f"  ... and {more} more"] if more > 0 else [])
        super().__init__(
            f"The export is damaged or not one this version reads ({len(self.problems)} "
            f"problem{'s' if len(self.problems) != 1 else ''}); nothing was imported:\n" + "\n".join(lines)
        )


@dataclass(frozen=True)
class ExportVector:
    model: str
    dimension: int
    data: bytes  # float32 little-endian, as Image.image_vector stores it


@dataclass(frozen=True)
class ExportEntry:
    file: str
    name: str
    sha256: str
    size: int
    labels: list[str]
    uploaded_at: datetime | None
    uploaded_by: str | None
    vector: ExportVector | None
    taken: TakenAt | None = None


def manifest_parse(raw: bytes, *, extra_labels: Sequence[str] = ()) -> tuple[list[ExportEntry], list[str]]:
    """The entries of a manifest and the problems found in it (all of them, in order)."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [], [f"{MANIFEST_NAME} is not valid JSON ({exc})."]
    if not isinstance(document, dict):
        return [], [f"{MANIFEST_NAME} is not a JSON object."]
    if document.get("format") != FORMAT:
        return [], [
            f"{MANIFEST_NAME} is not an image-search export (its format is {document.get('format')!r})."
        ]
    version = document.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        return [], [
            f"{MANIFEST_NAME} has format version {version!r}; this version of the application reads "
            f"version {FORMAT_VERSION}."
        ]
    images = document.get("images")
    if not isinstance(images, list):
        return [], [f"{MANIFEST_NAME} has no list of images."]
    problems: list[str] = []
    entries: list[ExportEntry] = []
    for position, item in enumerate(images):
        entry = _entry_parse(item, f"images[{position}]", problems, extra_labels)
        if entry is not None:
            entries.append(entry)
    for key, what in (("file", "file"), ("sha256", "SHA-256")):
        for value, count in Counter(getattr(e, key) for e in entries).items():
            if count > 1:
                problems.append(f"{count} images in the manifest have the same {what} {value}.")
    return entries, problems


_MISSING = object()


def _entry_parse(
    item: Any, where: str, problems: list[str], extra_labels: Sequence[str]
) -> ExportEntry | None:
    if not isinstance(item, dict):
        problems.append(f"{where}: expected an object, found {_type_name(item)}.")
        return None
    found = len(problems)

    def get(key: str, types: tuple[type, ...], *, required: bool) -> Any:
        value = item.get(key, _MISSING)
        if value is _MISSING or (value is None and not required):
            if required:
                problems.append(f"{where}: the field {key!r} is missing.")
            return None
        if not isinstance(value, types) or isinstance(value, bool):
            names = " or ".join(_TYPE_NAMES[t] for t in types)
            problems.append(f"{where}.{key}: expected {names}, found {_type_name(value)}.")
            return None
        return value

    file = get("file", (str,), required=True)
    sha256 = get("sha256", (str,), required=True)
    size = get("size", (int,), required=True)
    raw_labels = get("labels", (list,), required=True)
    name = get("name", (str,), required=False)
    uploaded_at_text = get("uploaded_at", (str,), required=False)
    uploaded_by = get("uploaded_by", (str,), required=False)
    taken_at_text = get("taken_at", (str,), required=False)
    raw_vector = get("image_vector", (dict,), required=False)

    if file is not None and (reason := export_path_problem(file)) is not None:
        problems.append(f"{where}.file {file!r}: {reason}")
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        problems.append(f"{where}.sha256: expected 64 lower-case hexadecimal digits.")
    if size is not None and size < 0:
        problems.append(f"{where}.size: expected a size in bytes, found {size}.")
    labels: list[str] = []
    if raw_labels is not None:
        if not all(isinstance(label, str) for label in raw_labels):
            problems.append(f"{where}.labels: expected a list of texts.")
        else:
            try:
                labels = clean_label_names([*raw_labels, *extra_labels])
            except InvalidLabels as exc:
                problems.append(f"{where}.labels: {exc}")
            else:
                if not labels:
                    problems.append(f"{where}.labels: an image needs at least one label.")
    uploaded_at = None
    if uploaded_at_text is not None:
        try:
            uploaded_at = datetime.fromisoformat(uploaded_at_text)
        except ValueError:
            problems.append(f"{where}.uploaded_at: {uploaded_at_text!r} is not an ISO 8601 date and time.")
        else:
            if timezone.is_naive(uploaded_at):
                problems.append(f"{where}.uploaded_at: {uploaded_at_text!r} has no UTC offset.")
    taken = None
    if taken_at_text is not None:
        try:  # no offset: the camera gave none (gallery.dates)
            taken = TakenAt.from_local(datetime.fromisoformat(taken_at_text))
        except ValueError:
            problems.append(f"{where}.taken_at: {taken_at_text!r} is not an ISO 8601 date and time.")
    vector = _vector_parse(raw_vector, f"{where}.image_vector", problems) if raw_vector is not None else None
    if len(problems) > found:
        return None
    return ExportEntry(
        file=file,
        name=name if name is not None else PurePosixPath(file).name,
        sha256=sha256,
        size=size,
        labels=labels,
        uploaded_at=uploaded_at,
        uploaded_by=uploaded_by,
        vector=vector,
        taken=taken,
    )


def _vector_parse(raw: dict[str, Any], where: str, problems: list[str]) -> ExportVector | None:
    model, dimension, encoding, data = (raw.get(k) for k in ("model", "dimension", "encoding", "data"))
    before = len(problems)
    if not isinstance(model, str) or not model:
        problems.append(f"{where}.model: expected the model's name.")
    if not isinstance(dimension, int) or isinstance(dimension, bool) or dimension < 1:
        problems.append(f"{where}.dimension: expected a positive whole number.")
    if encoding != VECTOR_ENCODING:
        problems.append(f"{where}.encoding: expected {VECTOR_ENCODING!r}, found {encoding!r}.")
    if not isinstance(data, str):
        problems.append(f"{where}.data: expected base64 text.")
    if len(problems) > before:
        return None
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        problems.append(f"{where}.data: not valid base64.")
        return None
    if len(blob) != 4 * dimension:
        problems.append(f"{where}.data: {len(blob)} bytes, but dimension {dimension} needs {4 * dimension}.")
        return None
    if not np.isfinite(from_bytes(blob)).all():
        problems.append(f"{where}.data: the vector holds values that are not finite numbers.")
        return None
    return ExportVector(model=model, dimension=dimension, data=blob)


_TYPE_NAMES = {str: "a text", int: "a whole number", list: "a list", dict: "an object"}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind):
            return name
    return "a number" if isinstance(value, float) else type(value).__name__


def export_path_problem(name: str) -> str | None:
    """Why ``name`` cannot be a file's path inside an export (None when it can): only plain
    relative paths, with forward slashes, that stay inside the export."""
    if not name:
        return "an empty path."
    if "\x00" in name:
        return "the path contains a NUL character."
    if "\\" in name:
        return "the path contains a backslash; an export uses forward slashes."
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "an absolute path; an export names its files relative to itself."
    parts = name.split("/")
    if ".." in parts:
        return "the path climbs out of the export with '..'."
    if any(part in ("", ".") for part in parts):
        return "not a plain relative path."
    if name == MANIFEST_NAME:
        return "the manifest itself."
    return None
