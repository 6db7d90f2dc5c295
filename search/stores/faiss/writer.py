"""Writing a generation: validate the vectors, publish the files, move ``CURRENT``, collect.

A generation's files are never changed in place, and ``CURRENT`` moves only once they are
complete and durable, so a crash at any point leaves the previous generation current
(docs/architecture.md, 'Invariants').
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import time
from pathlib import Path

import numpy as np

from . import files, pictures
from .errors import InvalidGeneration
from .faiss_lib import import_faiss
from .kinds import KINDS
from .lock import writer_lock
from .manifest import FORMAT_VERSION, Manifest, read_manifest_file
from .tuning import AUTO_FLAT_MAX_VECTORS, Tuning, kind_for, tune

logger = logging.getLogger(__name__)

#: How far a row's L2 norm may be from 1 before :func:`write_generation` refuses it.
UNIT_NORM_TOLERANCE = 1e-3


def _validate(ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32:
        raise ValueError(f"vectors must be a float32 ndarray, got {getattr(vectors, 'dtype', type(vectors))}")
    if vectors.ndim != 2 or vectors.shape[1] < 1:
        raise ValueError(f"vectors must have shape (n, d) with d >= 1, got {vectors.shape}")
    if not isinstance(ids, np.ndarray) or ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be an integer ndarray, got {getattr(ids, 'dtype', type(ids))}")
    if ids.ndim != 1 or ids.shape[0] != vectors.shape[0]:
        raise ValueError(f"ids must have shape ({vectors.shape[0]},), got {ids.shape}")
    if ids.size and ids.dtype.kind == "u" and ids.max() > np.iinfo(np.int64).max:
        raise ValueError("ids do not fit in int64")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors)
    if ids.size:
        if ids.min() < 0:
            raise ValueError("ids must be >= 0 (-1 marks a missing result)")
        ordered = np.sort(ids)  # np.unique is much slower at a million ids
        if (ordered[1:] == ordered[:-1]).any():
            raise ValueError("ids must be unique")
    # Norms chunk by chunk: no n x d temporary. A NaN/inf element makes its norm non-finite.
    for start in range(0, vectors.shape[0], 65536):
        chunk = vectors[start : start + 65536]
        sq = np.einsum("ij,ij->i", chunk, chunk)  # float32 is plenty for a 1e-3 tolerance
        bad = ~np.isfinite(sq)
        if bad.any():
            row = start + int(np.flatnonzero(bad)[0])
            raise ValueError(f"vectors must be finite (row {row}, id {int(ids[row])})")
        off = np.abs(np.sqrt(sq) - 1.0) > UNIT_NORM_TOLERANCE
        if off.any():
            row = start + int(np.flatnonzero(off)[0])
            raise ValueError(
                f"vectors must have unit L2 norm (row {row}, id {int(ids[row])}, "
                f"norm {math.sqrt(sq[row - start]):.6f})"
            )
    return ids, vectors


def _check_arguments(*, kind: str, model: str, image_weight: float, keep_previous: int) -> float:
    """Raise ValueError for a bad argument; return ``image_weight`` as a float."""
    if kind not in KINDS and kind != "auto":
        raise ValueError(f"unknown index kind {kind!r}; known: auto, {', '.join(sorted(KINDS))}")
    if not isinstance(model, str) or not model:
        raise ValueError("model must be a non-empty string")
    if isinstance(image_weight, bool) or not isinstance(image_weight, numbers.Real):
        raise ValueError("image_weight must be a number in [0, 1]")
    image_weight = float(image_weight)
    if not (math.isfinite(image_weight) and 0.0 <= image_weight <= 1.0):
        raise ValueError("image_weight must be a number in [0, 1]")
    if keep_previous < 0:
        raise ValueError("keep_previous must be >= 0")
    return image_weight


def write_generation(
    directory: files.PathLike,
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    model: str,
    image_weight: float,
    kind: str = "flat",
    keep_previous: int = 1,
    flat_max_vectors: int = AUTO_FLAT_MAX_VECTORS,
    text_queries: np.ndarray | None = None,
    image_queries: np.ndarray | None = None,
    picture_vectors: tuple[np.ndarray, np.ndarray] | None = None,
) -> Manifest:
    """Build an index of ``vectors`` labelled ``ids`` and make it the current generation.

    ``ids``: integer array, shape ``(n,)``, unique, ``>= 0``. ``vectors``: float32,
    shape ``(n, d)``, finite rows of unit L2 norm. ``n == 0`` is valid (an empty index;
    ``d`` still comes from ``vectors.shape[1]``). Anything else raises ``ValueError``
    before a file is touched.

    Takes the writer lock (blocking; re-entrant if the caller already holds it).
    Writes generation N+1, where N is the highest generation in ``CURRENT`` or on
    disk, as ``gen-NNNNNN.faiss`` and ``gen-NNNNNN.json``: each to a temporary name,
    fsynced, ``os.replace``d, directory fsynced; then moves ``CURRENT`` the same way.
    Then deletes every other generation except the ``keep_previous`` generations
    that were current before it (readers may still serve them; on Linux deleting a
    mapped file is safe anyway, on network storage it may not be, so raise
    ``keep_previous`` there), orphans of crashed writes, and temporary files.

    ``kind="auto"`` writes the exact flat kind up to ``flat_max_vectors`` vectors and IVF
    above (:mod:`.tuning`). An approximate kind is tuned before it is written: its search
    parameter becomes the smallest reaching recall@10 >= 0.95 against exact results on
    ``text_queries`` (text-like: label text vectors) and ``image_queries`` (image vectors;
    without them, a sample of ``vectors``); the manifest records the value and the recall.

    ``picture_vectors``: ``(ids, image vectors)`` of the same rows (those that have one; the
    same checks), written as the generation's second index (``gen-NNNNNN-picture.faiss``, of
    the same kind, tuned the same way, an IVF on the hybrid index's lists: :mod:`.pictures`)
    before the manifest that records it. None: the generation has no picture index.

    The flat kind is written straight from the arrays; the other kinds are built in
    memory first (peak memory about twice the vectors).
    Returns the new generation's :class:`Manifest`.
    """
    image_weight = _check_arguments(
        kind=kind, model=model, image_weight=image_weight, keep_previous=keep_previous
    )
    ids, vectors = _validate(ids, vectors)
    n, dim = vectors.shape
    if picture_vectors is not None:
        picture_ids, picture_matrix = _validate(*picture_vectors)
        if picture_matrix.shape[1] != dim:
            raise ValueError(f"picture vectors must have dimension {dim}, got {picture_matrix.shape[1]}")

    faiss = import_faiss()
    requested, kind = kind, kind_for(kind, n, flat_max_vectors)
    spec = KINDS[kind]
    tuning: Tuning | None = None
    built = None
    if spec.param is not None:
        # Built and tuned before the lock: the search parameter is part of what is published.
        built = spec.create(faiss, ids, vectors)
        tuning = tune(
            faiss, spec, built, ids, vectors, text_queries=text_queries, image_queries=image_queries
        )
    picture = None
    if picture_vectors is not None:
        picture = pictures.build(
            faiss,
            spec,
            built,
            picture_ids,
            picture_matrix,
            text_queries=text_queries,
            image_queries=image_queries,
        )

    def save(path: Path) -> None:
        if built is None:
            spec.save(faiss, path, ids, vectors)
        else:
            faiss.write_index(built, str(path))

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    with writer_lock(directory, blocking=True):
        try:
            previous = files.read_pointer(directory)
        except InvalidGeneration as exc:
            logger.warning("search index in %s: %s; writing a new generation", directory, exc)
            previous = None
        generation = max({previous or 0} | files.existing_generations(directory)) + 1

        index_name = files.index_name(generation)
        size, sha256 = files.publish_file(directory, index_name, save)
        picture_entry = None
        if picture is not None:
            picture_file = files.picture_name(generation)
            picture_size, picture_sha256 = files.publish_file(directory, picture_file, picture.save)
            picture_entry = pictures.entry(
                picture, file=picture_file, kind=kind, size=picture_size, sha256=picture_sha256
            )
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            generation=generation,
            kind=kind,
            model=model,
            dim=int(dim),
            count=int(n),
            image_weight=float(image_weight),
            sha256=sha256,
            size_bytes=size,
            created_at=time.time(),
            index_file=index_name,
            previous_generation=previous,
            requested_kind=requested,
            param=tuning.param if tuning else None,
            param_value=tuning.value if tuning else None,
            recall_text=tuning.recall_text if tuning else None,
            recall_image=tuning.recall_image if tuning else None,
            recall_text_queries=tuning.text_queries if tuning else None,
            recall_image_queries=tuning.image_queries if tuning else None,
            picture=picture_entry,
        )
        files.publish_bytes(directory, files.manifest_name(generation), manifest.to_json().encode())
        files.fsync_dir(directory)
        files.publish_pointer(directory, generation)
        tuned = ""
        if tuning:
            tuned = f", {tuning.param} {tuning.value}, recall@10 {tuning.recall_text}/{tuning.recall_image}"
        if picture_entry is not None:
            tuned += f"; picture index {picture_entry.count} vectors, {picture_entry.size_bytes} bytes"
            if picture_entry.param:
                tuned += f", {picture_entry.param} {picture_entry.param_value}"
        logger.info(
            "index generation %d written: %d x %d, %s, %s, %d bytes%s",
            *(generation, n, dim, kind, model, size, tuned),
        )

        _collect_garbage(directory, manifest, keep_previous)
    return manifest


def _collect_garbage(directory: Path, current: Manifest, keep_previous: int) -> None:
    """Delete stale temp files and every generation but ``current`` and the
    ``keep_previous`` that were current before it. Runs under the writer lock."""
    keep = {current.generation}
    previous = current.previous_generation
    while previous is not None and len(keep) <= keep_previous and previous not in keep:
        keep.add(previous)
        try:
            previous = read_manifest_file(directory, previous).previous_generation
        except InvalidGeneration:
            break
    for entry in list(os.scandir(directory)):
        match = files.GEN_RE.match(entry.name)
        stale = entry.name.startswith(files.TMP_PREFIX) or (
            match is not None and int(match.group(1)) not in keep
        )
        if stale:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # pragma: no cover - permissions etc.
                logger.warning("could not delete %s: %s", entry.path, exc)
