"""What both stores read from the rows: a model's vectors in one pass, label filters, and what a
search that finds no store to ask says."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet

from gallery.models import Image

from .. import encoder


class VectorSizesDiffer(ValueError):
    """The rows' stored vectors of one model have different sizes: they must be re-embedded."""


def vectors_read(queryset: QuerySet[Image], field: str, *, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors in ``field``) of the rows of ``queryset``, in its order, in one pass over a
    chunked cursor (:func:`columns_read`; every row must have the vector)."""
    ids, (vectors,), _ = columns_read(queryset, (field,), model=model)
    return ids, vectors


def columns_read(
    queryset: QuerySet[Image], fields: Sequence[str], *, model: str
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """(ids, the vectors of each of ``fields``, for each field whether a row has it) of the rows
    of ``queryset``, in its order, in one pass over a chunked cursor. A row without a vector in
    a field has zeros there; every field but the first may be missing.

    A plain cursor, a chunk of rows at a time turned into one array: the ORM's per-row
    iteration and a copy per blob cost a large share of a rebuild at a million rows.
    ``chunked_cursor`` is server-side on PostgreSQL, so memory stays at the vectors plus one
    chunk of rows.
    """
    query = queryset.values_list("pk", *fields).query
    sql, params = query.sql_with_params()
    id_parts: list[np.ndarray] = []
    parts: list[list[np.ndarray]] = [[] for _ in fields]
    present_parts: list[list[np.ndarray]] = [[] for _ in fields]
    sizes: list[set[int]] = [set() for _ in fields]
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(10_000):
            id_parts.append(np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)))
            for j, field in enumerate(fields):
                blobs = [row[j + 1] for row in rows]
                present = np.array([blob is not None for blob in blobs], dtype=bool)
                if j == 0 and not present.all():
                    raise ValueError(f"{field} is missing on rows read for a store")
                sizes[j].update(len(blob) for blob in blobs if blob is not None)
                if len(sizes[j] | sizes[0]) > 1:
                    raise VectorSizesDiffer(
                        f"{', '.join(fields)} of model {model!r} have different sizes "
                        f"{sorted(sizes[j] | sizes[0])}: re-embed them"
                    )
                width = next(iter(sizes[0])) if sizes[0] else 0
                filler = bytes(width)
                joined = b"".join(filler if blob is None else blob for blob in blobs)
                parts[j].append(encoder.from_bytes(joined).reshape(len(rows), -1))
                present_parts[j].append(present)
    if not id_parts:
        empty = np.zeros((0, 0), dtype=np.float32)
        return np.zeros(0, dtype=np.int64), [empty for _ in fields], [np.zeros(0, bool) for _ in fields]
    vectors = [np.concatenate(p).astype(np.float32, copy=False) for p in parts]
    return np.concatenate(id_parts), vectors, [np.concatenate(p) for p in present_parts]


def hybrids_read(*, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, hybrid vectors) of the searchable rows of ``model``: what a store is built from."""
    return vectors_read(Image.objects.searchable(model).order_by(), "hybrid_vector", model=model)


def hybrids_and_pictures_read(*, model: str) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """(ids, hybrid vectors, (ids, unit image vectors)) of the searchable rows of ``model``, in
    one pass: what a FAISS generation is built from (the picture part: the rows that have an
    image vector)."""
    rows = Image.objects.searchable(model).order_by()
    ids, (hybrids, images), (_, has_image) = columns_read(
        rows, ("hybrid_vector", "image_vector"), model=model
    )
    if not len(ids):
        return ids, hybrids, (ids, images)
    norms = np.sqrt(np.einsum("ij,ij->i", images, images))  # no n x d temporary
    keep = has_image & (norms > 0) & np.isfinite(norms)
    if keep.all():
        images /= norms[:, None]
        return ids, hybrids, (ids, images)
    picture_ids = ids[keep]
    pictures = images[keep] / norms[keep, None]
    return ids, hybrids, (picture_ids, pictures)


def with_labels(rows: QuerySet[Image], label_ids: Sequence[int]) -> QuerySet[Image]:
    """``rows`` that carry every label of ``label_ids`` (one join per label)."""
    for pk in label_ids:
        rows = rows.filter(labels=pk)
    return rows


def without_labels(rows: QuerySet[Image], label_ids: Sequence[int]) -> QuerySet[Image]:
    """``rows`` that carry none of ``label_ids``."""
    if not label_ids:
        return rows
    carrying = Image.labels.through.objects.filter(image_id=OuterRef("pk"), label_id__in=list(label_ids))
    return rows.exclude(Exists(carrying))


def no_index_message() -> str:
    """Why a search found nothing it could ask, in words for the person searching."""
    pending = Image.objects.pending().count()
    if Image.objects.count() == 0:
        return "Nothing has been indexed yet: an administrator can upload images."
    if pending:
        return f"The index is not built yet: {pending} image(s) are still being processed."
    return "The search index is not available yet; it is being rebuilt."
