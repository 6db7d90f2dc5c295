"""Writing and searching the vectors in PostgreSQL (pgvector's Django support: fields, index,
distance expressions). Every function here is called only when pgvector is the vector store."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.postgres.indexes import OpClass
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.models import Exists, OuterRef, Q, Value
from django.db.models.functions import Cast
from pgvector import HalfVector
from pgvector.django import HalfVectorField, HnswIndex, MaxInnerProduct

from gallery.models import RESULT_FIELDS, Image

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
# An emphasised query (search.query.ranking) takes a wide pool by hybrid and one by picture: both
# are searched this much wider than a page (BENCHMARKS.md, "The emphasis on pgvector": the
# picture search's first rows come nearer exact, text queries above all).
EMPHASIS_EF_SEARCH_FACTOR = 2.5
EF_SEARCH_LIMIT = 1000  # pgvector's largest hnsw.ef_search

# The searched columns: the hybrid, and the image vector alone (an emphasis on the picture).
HYBRID, PICTURE = "embedding", "picture"
COLUMNS = (HYBRID, PICTURE)
_INDEX_PREFIX = {HYBRID: "search_vec_hnsw", PICTURE: "search_pic_hnsw"}

_indexed: set[tuple[str, int]] = set()  # (database alias, dimension) known to have their indexes
_indexed_lock = threading.Lock()


def index_name(dimension: int, column: str = HYBRID) -> str:
    return f"{_INDEX_PREFIX[column]}_{dimension}"


def _ranked(dimension: int, column: str = HYBRID) -> Cast:
    """The expression the HNSW index of ``dimension`` is built on and every search orders by."""
    return Cast(column, HalfVectorField(dimensions=dimension))


def hnsw_index(dimension: int, column: str = HYBRID) -> HnswIndex:
    """An HNSW index over one column's vectors of one dimension (an index needs one): a partial
    index on ``column::halfvec(dimension)``, so that a model change never mixes dimensions in one.
    The hybrid's and the picture's are built alike (rows without a picture are not in it)."""
    return HnswIndex(
        OpClass(_ranked(dimension, column), name=OPCLASS),
        name=index_name(dimension, column),
        m=HNSW_M,
        ef_construction=HNSW_EF_CONSTRUCTION,
        condition=Q(dimension=dimension),
    )


def _index_exists(on: Any, dimension: int, column: str) -> bool:
    with on.cursor() as cursor:
        return index_name(dimension, column) in on.introspection.get_constraints(cursor, TABLE)


def index_ensure(dimension: int, *, using: str | None = None) -> bool:
    """Create the HNSW indexes of ``dimension`` (hybrid and picture) unless they exist (before the
    first vector of that dimension is written: later writes update them). Returns whether one
    was created here."""
    on = connections[using or DEFAULT_DB_ALIAS]
    key = (on.alias, dimension)
    if key in _indexed:
        return False
    with _indexed_lock:
        created = False
        for column in COLUMNS:
            if _index_exists(on, dimension, column):
                continue
            try:
                with transaction.atomic(using=on.alias), on.schema_editor(atomic=False) as editor:
                    editor.add_index(ImageVector, hnsw_index(dimension, column))
                created = True
            except DatabaseError:  # another process created it a moment ago
                if not _index_exists(on, dimension, column):
                    raise
        _indexed.add(key)
        return created


def indexes_complete(*, using: str) -> list[str]:
    """Create the indexes missing for the dimensions the table holds (a database that had
    hybrids before the picture column: ``migrate`` completes it). Returns the names created."""
    on = connections[using]
    dimensions = ImageVector.objects.using(using).order_by().values_list("dimension", flat=True).distinct()
    created = []
    for dimension in sorted(dimensions):
        missing = [index_name(dimension, c) for c in COLUMNS if not _index_exists(on, dimension, c)]
        if missing:
            _indexed.discard((on.alias, dimension))  # this process may have seen them before
            index_ensure(dimension, using=using)
            created += missing
    return created


def reset() -> None:
    """Forget which indexes exist (tests recreate their database)."""
    _indexed.clear()


def hybrids_write(
    rows: Sequence[tuple[int, np.ndarray]],
    *,
    model: str,
    now: datetime,
    pictures: Mapping[int, bytes | None] | None = None,
) -> None:
    """Store the hybrids of these (existing) images, replacing earlier ones, each with its image
    vector (``pictures``: the rows' ``image_vector`` bytes by id; read from the rows when not
    given). Call it in the transaction that marks the rows ready: the vectors commit with them.

    Every caller's hybrid comes from the row's image vector as it stands in this transaction
    (a new embedding, a relabel, a weight change), so the picture written is the hybrid's own."""
    if not rows:
        return
    for dimension in {len(vector) for _, vector in rows}:
        index_ensure(dimension)
    if pictures is None:
        pictures = dict(Image.objects.filter(pk__in=[pk for pk, _ in rows]).values_list("pk", "image_vector"))
    ImageVector.objects.bulk_create(
        [
            ImageVector(
                image_id=pk,
                model=model,
                dimension=len(vector),
                embedding=HalfVector(np.asarray(vector, dtype=np.float32)),
                picture=_picture(pictures.get(pk), len(vector)),
                updated_at=now,
            )
            for pk, vector in rows
        ],
        update_conflicts=True,
        unique_fields=["image"],
        update_fields=["model", "dimension", "embedding", "picture", "updated_at"],
    )


def _picture(blob: bytes | memoryview | None, dimension: int) -> HalfVector | None:
    """The stored image vector as the picture column holds it; None where the row has none of
    the hybrid's dimension (it is then not searched by picture)."""
    if blob is None:
        return None
    vector = encoder.from_bytes(blob)
    return HalfVector(vector) if len(vector) == dimension else None


def nearest(
    vector: np.ndarray,
    *,
    model: str,
    needed: int,
    exclude_id: int | None = None,
    label_ids: Sequence[int] = (),
    without_label_ids: Sequence[int] = (),
    column: str = HYBRID,
    ef_search: int | None = None,
) -> list[tuple[Image, float]]:
    """The ``needed`` ready images of ``model`` nearest to ``vector`` (inner product, best first)
    that carry every label of ``label_ids`` and none of ``without_label_ids``, with their scores:
    one query (:func:`nearest_query`). ``column``: by their hybrids, or by their pictures alone
    (rows without a picture are left out). ``ef_search``: the search breadth, when not the
    setting's.

    The HNSW index scan is iterative (``hnsw.iterative_scan``): when the filters drop the first
    candidates it goes on scanning, so a rare label still fills its page."""
    kept = _filter_bound(label_ids)
    exact = kept is not None and kept <= base.EXACT_FILTER_LIMIT  # as on the FAISS store
    filters = {"exclude_id": exclude_id, "label_ids": label_ids, "without_label_ids": without_label_ids}
    found = _run(
        nearest_query(vector, model=model, needed=needed, exact=exact, column=column, **filters), ef_search
    )
    if not exact and kept is not None and len(found) < min(needed, kept):
        # The iterative scan gave up (hnsw.max_scan_tuples) before filling the page: the
        # filter's rows lie far from the query. Score them exactly instead.
        found = _run(nearest_query(vector, model=model, needed=needed, exact=True, column=column, **filters))
    return [(row.image, -float(row.distance)) for row in found]


def _run(query: Any, ef_search: int | None = None) -> list[Any]:
    if ef_search is None and _connection_has_search_settings():
        return list(query)
    with transaction.atomic():
        search_settings(ef_search)
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
    column: str = HYBRID,
) -> Any:
    """The query of :func:`nearest`: vector rows with their images, filtered, ranked by
    ``column`` (the hybrid or the picture), limited.

    ``exact``: rank by an expression the HNSW index does not cover, so that the planner scores the
    filter's rows exactly (through the label index) instead of walking the graph."""
    if column not in COLUMNS:
        raise ValueError(f"column must be one of {COLUMNS}, not {column!r}")
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    dimension = len(vector)
    rows = ImageVector.objects.filter(
        model=model, dimension=dimension, image__status=Image.Status.READY
    ).select_related("image")
    if column == PICTURE:
        rows = rows.filter(picture__isnull=False)
    if exclude_id is not None:
        rows = rows.exclude(image_id=exclude_id)
    through = Image.labels.through
    for label_id in label_ids:
        rows = rows.filter(Exists(through.objects.filter(image_id=OuterRef("image_id"), label_id=label_id)))
    if without_label_ids:
        left_out = through.objects.filter(image_id=OuterRef("image_id"), label_id__in=list(without_label_ids))
        rows = rows.exclude(Exists(left_out))
    query = Cast(Value(HalfVector(vector).to_text()), HalfVectorField(dimensions=dimension))
    ranked = Cast(column, HalfVectorField()) if exact else _ranked(dimension, column)
    return (
        rows.annotate(distance=MaxInnerProduct(ranked, query))
        .only("image", *(f"image__{name}" for name in RESULT_FIELDS))  # as the FAISS store reads them
        .order_by("distance")[:needed]  # the index's own order: no second key to sort by
    )


def emphasis_ef_search() -> int:
    """The search breadth of an emphasised query (the hybrids and the pictures both): the
    setting's times ``EMPHASIS_EF_SEARCH_FACTOR``, within pgvector's limit."""
    return min(EF_SEARCH_LIMIT, round(settings.IMAGESEARCH_PGVECTOR_EF_SEARCH * EMPHASIS_EF_SEARCH_FACTOR))


def _search_options() -> str:
    ef_search = settings.IMAGESEARCH_PGVECTOR_EF_SEARCH
    return f"-c hnsw.ef_search={ef_search} -c hnsw.iterative_scan={ITERATIVE_SCAN}"


def _connection_has_search_settings() -> bool:
    """Whether this connection started with today's search settings (imagesearch/settings.py puts
    them in its options); else they are set for the query's transaction (a setting changed since)."""
    return _search_options() in connection.settings_dict.get("OPTIONS", {}).get("options", "")


def search_settings(ef_search: int | None = None) -> None:
    """pgvector's search settings for this transaction (pgvector's Django support has no API for
    them): the search breadth (``ef_search``, else the setting's), and iterative scans in exact
    distance order."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', %s, true)",
            [str(ef_search or settings.IMAGESEARCH_PGVECTOR_EF_SEARCH), ITERATIVE_SCAN],
        )


def vectors_missing(model: str) -> Any:
    """Searchable images of ``model`` whose vector row is missing or older than their hybrid
    (made while FAISS was the store, or by a process that did not write it), or lacks the
    picture the row has (written before the picture column existed)."""
    current = ImageVector.objects.filter(
        image_id=OuterRef("pk"), model=model, updated_at__gte=OuterRef("hybrid_updated_at")
    )
    no_picture = Q(image_vector__isnull=False) & ~Exists(current.filter(picture__isnull=False))
    return Image.objects.searchable(model).filter(~Exists(current) | no_picture)


def vectors_backfill(model: str, *, limit: int = 20_000, chunk: int = 1000) -> int:
    """Write the vectors of up to ``limit`` images from their stored hybrids (the sweep does this:
    a library that switches from FAISS to pgvector becomes searchable without re-embedding)."""
    ids = list(vectors_missing(model).order_by("pk").values_list("pk", flat=True)[:limit])
    done = 0
    for start in range(0, len(ids), chunk):
        with transaction.atomic():
            rows = list(
                Image.objects.select_for_update()
                .searchable(model)
                .filter(pk__in=ids[start : start + chunk])
                .values_list("pk", "hybrid_vector", "hybrid_updated_at", "image_vector")
            )
            batch = [(pk, encoder.from_bytes(blob), at) for pk, blob, at, _ in rows]
            pictures = {pk: picture for pk, *_, picture in rows}
            for at in {at for *_, at in batch}:
                written = [(pk, v) for pk, v, t in batch if t == at]
                hybrids_write(written, model=model, now=at, pictures=pictures)
            done += len(batch)
    return done


def vectors_dimension(model: str) -> int | None:
    """The dimension of ``model``'s stored vectors (one per model), None while there are none."""
    return ImageVector.objects.filter(model=model).values_list("dimension", flat=True).first()


def vectors_summary(model: str) -> dict[str, Any]:
    """What the status page shows for this store: vectors of the model (and how many of them
    have their picture), their dimension, the table's size on disk with its indexes, and how
    many images wait for their vector or its picture."""
    of_model = ImageVector.objects.filter(model=model, image__status=Image.Status.READY)
    dimension = vectors_dimension(model)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s)", [TABLE])  # no ORM API for sizes
        (size,) = cursor.fetchone()
    return {
        "vectors": of_model.count(),
        "pictures": of_model.filter(picture__isnull=False).count(),
        "dimension": dimension,
        "size_bytes": int(size),
        "missing": vectors_missing(model).count(),
    }
