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
    chunked cursor.

    A plain cursor, a chunk of rows at a time turned into one array: the ORM's per-row
    iteration and a copy per blob cost a large share of a rebuild at a million rows.
    ``chunked_cursor`` is server-side on PostgreSQL, so memory stays at the vectors plus one
    chunk of rows.
    """
    query = queryset.values_list("pk", field).query
    sql, params = query.sql_with_params()
    id_parts: list[np.ndarray] = []
    vector_parts: list[np.ndarray] = []
    sizes: set[int] = set()
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(10_000):
            blobs = [blob for _, blob in rows]
            sizes.update(len(blob) for blob in blobs)
            if len(sizes) > 1:
                raise VectorSizesDiffer(
                    f"{field} of model {model!r} have different sizes {sorted(sizes)}: re-embed them"
                )
            id_parts.append(np.fromiter((pk for pk, _ in rows), dtype=np.int64, count=len(rows)))
            vector_parts.append(encoder.from_bytes(b"".join(blobs)).reshape(len(rows), -1))
    if not id_parts:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(id_parts), np.concatenate(vector_parts).astype(np.float32, copy=False)


def hybrids_read(*, model: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, hybrid vectors) of the searchable rows of ``model``: what a store is built from."""
    return vectors_read(Image.objects.searchable(model).order_by(), "hybrid_vector", model=model)


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
