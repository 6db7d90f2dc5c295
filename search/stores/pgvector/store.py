"""Writing and searching the vectors in PostgreSQL (pgvector's Django support: fields, index,
distance expressions). Every function here is called only when pgvector is the vector store."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.postgres.indexes import OpClass
from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, OuterRef, Q, Value
from django.db.models.functions import Cast
from pgvector import HalfVector
from pgvector.django import HalfVectorField, HnswIndex, MaxInnerProduct

from gallery.models import Image

from ... import encoder
from ...models import ImageVector
from .. import base
from .database import EXTENSION_MINIMUM, TABLE

__all__ = ["EXTENSION_MINIMUM"]

# A denser graph than pgvector's defaults (16, 64): text-like queries need it (BENCHMARKS.md, pgvector).
HNSW_M = base.HNSW_M
HNSW_EF_CONSTRUCTION = 128
OPCLASS = "halfvec_ip_ops"
# Scan on in exact distance order while filters (labels, status, model) drop candidates.
ITERATIVE_SCAN = "strict_order"

_indexed: set[tuple[str, int]] = set()  # (database alias, dimension) known to have their index
_indexed_lock = threading.Lock()


def index_name(dimension: int) -> str:
    return f"search_vec_hnsw_{dimension}"


def _ranked(dimension: int) -> Cast:
    """The expression the HNSW index of ``dimension`` is built on and every search orders by."""
    return Cast("embedding", HalfVectorField(dimensions=dimension))


def hnsw_index(dimension: int) -> HnswIndex:
    """An HNSW index over the vectors of one dimension (an index needs one): a partial index on
    ``embedding::halfvec(dimension)``, so that a model change never mixes dimensions in one."""
    return HnswIndex(
        OpClass(_ranked(dimension), name=OPCLASS),
        name=index_name(dimension),
        m=HNSW_M,
        ef_construction=HNSW_EF_CONSTRUCTION,
        condition=Q(dimension=dimension),
    )


def _index_exists(dimension: int) -> bool:
    with connection.cursor() as cursor:
        return index_name(dimension) in connection.introspection.get_constraints(cursor, TABLE)


def index_ensure(dimension: int) -> bool:
    """Create the HNSW index of ``dimension`` unless it exists (before the first vector of that
    dimension is written: later writes update it). Returns whether it was created here."""
    key = (connection.alias, dimension)
    if key in _indexed:
        return False
    with _indexed_lock:
        created = False
        if not _index_exists(dimension):
            try:
                with transaction.atomic(), connection.schema_editor(atomic=False) as editor:
                    editor.add_index(ImageVector, hnsw_index(dimension))
                created = True
            except DatabaseError:  # another process created it a moment ago
                if not _index_exists(dimension):
                    raise
        _indexed.add(key)
        return created


def reset() -> None:
    """Forget which indexes exist (tests recreate their database)."""
    _indexed.clear()


def hybrids_write(rows: Sequence[tuple[int, np.ndarray]], *, model: str, now: datetime) -> None:
    """Store the hybrids of these (existing) images, replacing earlier ones. Call it in the
    transaction that marks the rows ready: the vectors commit with them."""
    if not rows:
        return
    for dimension in {len(vector) for _, vector in rows}:
        index_ensure(dimension)
    ImageVector.objects.bulk_create(
        [
            ImageVector(
                image_id=pk,
                model=model,
                dimension=len(vector),
                embedding=HalfVector(np.asarray(vector, dtype=np.float32)),
                updated_at=now,
            )
            for pk, vector in rows
        ],
        update_conflicts=True,
        unique_fields=["image"],
        update_fields=["model", "dimension", "embedding", "updated_at"],
    )


def nearest(
    vector: np.ndarray,
    *,
    model: str,
    needed: int,
    exclude_id: int | None = None,
    label_ids: Sequence[int] = (),
    without_label_ids: Sequence[int] = (),
) -> list[tuple[Image, float]]:
    """The ``needed`` ready images of ``model`` nearest to ``vector`` (inner product, best first)
    that carry every label of ``label_ids`` and none of ``without_label_ids``, with their scores:
    one query (:func:`nearest_query`).

    The HNSW index scan is iterative (``hnsw.iterative_scan``): when the filters drop the first
    candidates it goes on scanning, so a rare label still fills its page."""
    kept = _filter_bound(label_ids)
    exact = kept is not None and kept <= base.EXACT_FILTER_LIMIT  # as on the FAISS store
    filters = {"exclude_id": exclude_id, "label_ids": label_ids, "without_label_ids": without_label_ids}
    found = _run(nearest_query(vector, model=model, needed=needed, exact=exact, **filters))
    if not exact and kept is not None and len(found) < min(needed, kept):
        # The iterative scan gave up (hnsw.max_scan_tuples) before filling the page: the
        # filter's rows lie far from the query. Score them exactly instead.
        found = _run(nearest_query(vector, model=model, needed=needed, exact=True, **filters))
    return [(row.image, -float(row.distance)) for row in found]


def _run(query: Any) -> list[Any]:
    if _connection_has_search_settings():
        return list(query)
    with transaction.atomic():
        search_settings()
        return list(query)


def _filter_bound(label_ids: Sequence[int]) -> int | None:
    """At most how many images the label filter keeps (its rarest label's count); None: no filter."""
    if not label_ids:
        return None
    through = Image.labels.through
    return min(through.objects.filter(label_id=label_id).count() for label_id in label_ids)


def nearest_query(
    vector: np.ndarray,
    *,
    model: str,
    needed: int,
    exclude_id: int | None = None,
    label_ids: Sequence[int] = (),
    without_label_ids: Sequence[int] = (),
    exact: bool = False,
) -> Any:
    """The query of :func:`nearest`: vector rows with their images, filtered, ranked, limited.

    ``exact``: rank by an expression the HNSW index does not cover, so that the planner scores the
    filter's rows exactly (through the label index) instead of walking the graph."""
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    dimension = len(vector)
    rows = ImageVector.objects.filter(
        model=model, dimension=dimension, image__status=Image.Status.READY
    ).select_related("image")
    if exclude_id is not None:
        rows = rows.exclude(image_id=exclude_id)
    through = Image.labels.through
    for label_id in label_ids:
        rows = rows.filter(Exists(through.objects.filter(image_id=OuterRef("image_id"), label_id=label_id)))
    if without_label_ids:
        left_out = through.objects.filter(image_id=OuterRef("image_id"), label_id__in=list(without_label_ids))
        rows = rows.exclude(Exists(left_out))
    query = Cast(Value(HalfVector(vector).to_text()), HalfVectorField(dimensions=dimension))
    ranked = Cast("embedding", HalfVectorField()) if exact else _ranked(dimension)
    return (
        rows.annotate(distance=MaxInnerProduct(ranked, query))
        .defer("embedding", "image__image_vector", "image__hybrid_vector")
        .order_by("distance")[:needed]  # the index's own order: no second key to sort by
    )


def _search_options() -> str:
    ef_search = settings.IMAGESEARCH_PGVECTOR_EF_SEARCH
    return f"-c hnsw.ef_search={ef_search} -c hnsw.iterative_scan={ITERATIVE_SCAN}"


def _connection_has_search_settings() -> bool:
    """Whether this connection started with today's search settings (imagesearch/settings.py puts
    them in its options); else they are set for the query's transaction (a setting changed since)."""
    return _search_options() in connection.settings_dict.get("OPTIONS", {}).get("options", "")


def search_settings() -> None:
    """pgvector's search settings for this transaction (pgvector's Django support has no API for
    them): the search breadth, and iterative scans in exact distance order."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', %s, true)",
            [str(settings.IMAGESEARCH_PGVECTOR_EF_SEARCH), ITERATIVE_SCAN],
        )


def vectors_missing(model: str) -> Any:
    """Searchable images of ``model`` whose vector row is missing or older than their hybrid
    (made while FAISS was the store, or by a process that did not write it)."""
    current = ImageVector.objects.filter(
        image_id=OuterRef("pk"), model=model, updated_at__gte=OuterRef("hybrid_updated_at")
    )
    return Image.objects.searchable(model).filter(~Exists(current))


def vectors_backfill(model: str, *, limit: int = 20_000, chunk: int = 1000) -> int:
    """Write the vectors of up to ``limit`` images from their stored hybrids (the sweep does this:
    a library that switches from FAISS to pgvector becomes searchable without re-embedding)."""
    ids = list(vectors_missing(model).order_by("pk").values_list("pk", flat=True)[:limit])
    done = 0
    for start in range(0, len(ids), chunk):
        with transaction.atomic():
            rows = (
                Image.objects.select_for_update()
                .searchable(model)
                .filter(pk__in=ids[start : start + chunk])
                .values_list("pk", "hybrid_vector", "hybrid_updated_at")
            )
            batch = [(pk, encoder.from_bytes(blob), at) for pk, blob, at in rows]
            for at in {at for *_, at in batch}:
                hybrids_write([(pk, v) for pk, v, t in batch if t == at], model=model, now=at)
            done += len(batch)
    return done


def vectors_dimension(model: str) -> int | None:
    """The dimension of ``model``'s stored vectors (one per model), None while there are none."""
    return ImageVector.objects.filter(model=model).values_list("dimension", flat=True).first()


def vectors_summary(model: str) -> dict[str, Any]:
    """What the status page shows for this store: vectors of the model, their dimension, the
    table's size on disk with its indexes, and how many images wait for their vector."""
    of_model = ImageVector.objects.filter(model=model, image__status=Image.Status.READY)
    dimension = vectors_dimension(model)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s)", [TABLE])  # no ORM API for sizes
        (size,) = cursor.fetchone()
    return {
        "vectors": of_model.count(),
        "dimension": dimension,
        "size_bytes": int(size),
        "missing": vectors_missing(model).count(),
    }
