"""A generation's manifest (``gen-NNNNNN.json``): what the index file beside it holds."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import files
from .errors import InvalidGeneration

logger = logging.getLogger(__name__)

#: Version of the on-disk layout (file names, manifest fields). Readers refuse others.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PictureIndex:
    """The generation's second index file (``gen-NNNNNN-picture.faiss``): the same ready rows'
    image vectors alone, which an emphasised search asks for the rows nearest by picture.

    ``count`` rows (those with an image vector), of ``kind`` (the generation's), its file's
    ``sha256`` and ``size_bytes``; an approximate kind's tuned ``param_value`` and the
    recall@10 it gave, as the manifest records them for the hybrid index. ``quantizer``:
    ``"hybrid"`` when an IVF took the hybrid index's trained lists (no training of its own).
    """

    file: str
    kind: str
    count: int
    sha256: str
    size_bytes: int
    param: str | None = None
    param_value: int | None = None
    recall_text: float | None = None
    recall_image: float | None = None
    quantizer: str | None = None

    @classmethod
    def from_dict(cls, data: Any, generation: int) -> PictureIndex:
        if not isinstance(data, dict):
            raise InvalidGeneration("manifest field 'picture' is not an object")

        def field(name: str, types: tuple[type, ...], optional: bool = False) -> Any:
            value = data.get(name)
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, types):
                raise InvalidGeneration(f"manifest field 'picture.{name}' is missing or has the wrong type")
            return value

        picture = cls(
            file=field("file", (str,)),
            kind=field("kind", (str,)),
            count=field("count", (int,)),
            sha256=field("sha256", (str,)),
            size_bytes=field("size_bytes", (int,)),
            param=field("param", (str,), True),
            param_value=field("param_value", (int,), True),
            recall_text=_float_or_none(field("recall_text", (int, float), True)),
            recall_image=_float_or_none(field("recall_image", (int, float), True)),
            quantizer=field("quantizer", (str,), True),
        )
        if picture.file != files.picture_name(generation):
            raise InvalidGeneration(f"manifest picture file {picture.file!r} does not match its generation")
        if picture.count < 0 or not re.fullmatch(r"[0-9a-f]{64}", picture.sha256):
            raise InvalidGeneration("manifest picture count or sha256 out of range")
        return picture


@dataclass(frozen=True)
class Manifest:
    """What a generation is. Stored as ``gen-NNNNNN.json`` beside the index file.

    ``sha256`` is the hex digest of the whole index file and ``size_bytes`` its size;
    ``created_at`` is a unix timestamp; ``image_weight`` is the image/label weight the
    hybrids were made with; ``count`` equals the index's ``ntotal``;
    ``previous_generation`` is the generation ``CURRENT`` named when this one was
    written (``None`` for the first), which is what the writer keeps for readers.

    ``requested_kind`` is what was asked for (``auto`` or a kind; ``kind`` is what was built).
    An approximate kind records its tuned search parameter (``param``, ``param_value``) and the
    recall@10 measured with it against exact results on text-like and image queries
    (``recall_text``, ``recall_image``, over ``recall_text_queries`` / ``recall_image_queries``
    queries); the exact flat kind records none of them. Generations written before these
    fields existed read as ``None``. ``picture``: the generation's index over the image vectors
    alone (:class:`PictureIndex`); ``None`` for generations written before it existed.
    """

    format_version: int
    generation: int
    kind: str
    model: str
    dim: int
    count: int
    image_weight: float
    sha256: str
    size_bytes: int
    created_at: float
    index_file: str
    previous_generation: int | None = None
    requested_kind: str | None = None
    param: str | None = None
    param_value: int | None = None
    recall_text: float | None = None
    recall_image: float | None = None
    recall_text_queries: int | None = None
    recall_image_queries: int | None = None
    picture: PictureIndex | None = None

    @property
    def exact(self) -> bool:
        """Whether searches of this generation give the exact top-k."""
        return self.kind == "flat"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse and type-check a manifest; raise :class:`InvalidGeneration` if malformed."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidGeneration(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidGeneration("manifest is not a JSON object")

        def field(name: str, types: tuple[type, ...]) -> Any:
            if name not in data:
                raise InvalidGeneration(f"manifest has no {name!r}")
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, types):
                raise InvalidGeneration(f"manifest field {name!r} has the wrong type")
            return value

        def optional(name: str, types: tuple[type, ...]) -> Any:
            return None if data.get(name) is None else field(name, types)

        version = field("format_version", (int,))
        generation = field("generation", (int,))
        if version != FORMAT_VERSION:
            raise InvalidGeneration(
                f"manifest format_version {version} is not supported (expected {FORMAT_VERSION})"
            )
        manifest = cls(
            format_version=version,
            generation=generation,
            kind=field("kind", (str,)),
            model=field("model", (str,)),
            dim=field("dim", (int,)),
            count=field("count", (int,)),
            image_weight=float(field("image_weight", (int, float))),
            sha256=field("sha256", (str,)),
            size_bytes=field("size_bytes", (int,)),
            created_at=float(field("created_at", (int, float))),
            index_file=field("index_file", (str,)),
            previous_generation=optional("previous_generation", (int,)),
            requested_kind=optional("requested_kind", (str,)),
            param=optional("param", (str,)),
            param_value=optional("param_value", (int,)),
            recall_text=_float_or_none(optional("recall_text", (int, float))),
            recall_image=_float_or_none(optional("recall_image", (int, float))),
            recall_text_queries=optional("recall_text_queries", (int,)),
            recall_image_queries=optional("recall_image_queries", (int,)),
            picture=_picture_or_none(data.get("picture"), generation),
        )
        if manifest.generation < 1 or manifest.dim < 1 or manifest.count < 0:
            raise InvalidGeneration("manifest generation, dim or count out of range")
        if not re.fullmatch(r"[0-9a-f]{64}", manifest.sha256):
            raise InvalidGeneration("manifest sha256 is not a hex digest")
        if manifest.index_file != files.index_name(manifest.generation):
            raise InvalidGeneration(
                f"manifest index_file {manifest.index_file!r} does not match its generation"
            )
        return manifest


def _picture_or_none(data: Any, generation: int) -> PictureIndex | None:
    return None if data is None else PictureIndex.from_dict(data, generation)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def read_manifest_file(directory: Path, generation: int) -> Manifest:
    """The manifest of ``generation``; raises :class:`InvalidGeneration` if missing or bad."""
    path = directory / files.manifest_name(generation)
    try:
        text = path.read_bytes()
    except FileNotFoundError as exc:
        raise InvalidGeneration(f"manifest {path.name} is missing") from exc
    except OSError as exc:
        raise InvalidGeneration(f"cannot read manifest {path.name}: {exc}") from exc
    manifest = Manifest.from_json(text)
    if manifest.generation != generation:
        raise InvalidGeneration(
            f"manifest {path.name} describes generation {manifest.generation}, not {generation}"
        )
    return manifest


def read_current_manifest(directory: files.PathLike, *, strict: bool = False) -> Manifest | None:
    """The manifest of the generation ``CURRENT`` names, without verifying the index file.

    Returns ``None`` when nothing has been written yet (no ``CURRENT``). When ``CURRENT``
    or the manifest is unreadable or malformed it logs a warning and returns ``None``
    too (so that a status page keeps working and "no usable index" triggers a
    rebuild, which repairs it), or raises :class:`InvalidGeneration` if ``strict``.
    Cheap: reads two small files. What a reader serves is :attr:`IndexReader.manifest`.
    """
    directory = Path(directory)
    try:
        generation = files.read_pointer(directory)
        if generation is None:
            return None
        return read_manifest_file(directory, generation)
    except InvalidGeneration as exc:
        if strict:
            raise
        logger.warning("search index in %s: %s", directory, exc)
        return None
