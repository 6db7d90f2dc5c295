"""The stored parts behind results' scores: each row's image vector, hybrid weight and label
vector (the normalised mean of its labels' text vectors, as the hybrid was made from them).

Read for the rows of one page (the explanations) or for the candidates an emphasis re-ranks.
The stores re-read their hits with the image vector and the hybrid weight
(``gallery.models.RESULT_FIELDS``): for those rows only their labels are read, in one plain query
that brings the label names too; rows read without them cost one query more. Plain SQL and one
numpy pass over all the vectors: on every search page, building ORM queries and normalising
vector by vector cost more than the rest of the explanation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
from django.db import connection

from gallery.models import Image, Label

from .. import encoder
from .explain import RowVectors


def rows_vectors(ids: Sequence[int], *, images: Iterable[Image] = ()) -> dict[int, RowVectors]:
    """The stored parts of the rows ``ids`` that have an image vector. The label names of
    ``images`` (rows among ``ids``) are loaded on the way (``Image.label_names``); the image
    vectors and weights they were read with (``gallery.models.RESULT_FIELDS``) are used as read."""
    ids = list(dict.fromkeys(int(pk) for pk in ids))
    if not ids:
        return {}
    images = list(images)
    links = _select(
        "SELECT l.{image_id}, l.{label_id}, t.{name}, t.{vector} FROM {links} l"
        " JOIN {labels} t ON t.{pk} = l.{label_id} WHERE l.{image_id} IN ({ids}) ORDER BY t.{name}",
        ids,
    )
    names_of: dict[int, list[str]] = {pk: [] for pk in ids}
    for image_id, _, name, _ in links:
        names_of[image_id].append(name)
    for image in images:
        image.__dict__["_label_names"] = names_of.get(image.pk, [])
    image_rows = [
        (image.pk, image.__dict__["image_vector"], image.hybrid_weight)
        for image in images
        if image.__dict__.get("image_vector") is not None and image.pk in names_of
    ]
    have = {pk for pk, _, _ in image_rows}
    unread = [pk for pk in ids if pk not in have]
    if unread:
        image_rows += _select(
            "SELECT {pk}, {image_vector}, {hybrid_weight} FROM {images} WHERE {pk} IN ({ids})"
            " AND {image_vector} IS NOT NULL",
            unread,
        )
    if not image_rows:
        return {}
    pictures = _unit_rows([blob for _, blob, _ in image_rows])
    label_means = _label_means([pk for pk, _, _ in image_rows], links, pictures.shape[1])
    return {
        pk: RowVectors(pictures[row], label_means.get(pk), 0.5 if weight is None else float(weight))
        for row, (pk, _, weight) in enumerate(image_rows)
    }


def _label_means(ids: list[int], links: list[tuple], dimension: int) -> dict[int, np.ndarray]:
    """The normalised mean of the label vectors of each row of ``ids`` that has labels with
    vectors of ``dimension`` (``links``: (image id, label id, name, label vector) rows)."""
    blobs: dict[int, bytes | memoryview] = {}
    for _, label_id, _, blob in links:
        if blob is not None:
            blobs.setdefault(label_id, blob)
    if not blobs:
        return {}
    vectors = _unit_rows(list(blobs.values()))
    if vectors.shape[1] != dimension:
        return {}
    column = {label_id: i for i, label_id in enumerate(blobs)}
    row = {pk: i for i, pk in enumerate(ids)}
    carried = np.zeros((len(ids), len(blobs)), dtype=np.float32)
    for image_id, label_id, _, _ in links:
        if label_id in column and image_id in row:
            carried[row[image_id], column[label_id]] = 1.0
    counts = carried.sum(axis=1)
    means = encoder.normalize((carried / np.where(counts > 0, counts, 1.0)[:, None]) @ vectors)
    return {pk: means[i] for pk, i in row.items() if counts[i] > 0}


def _unit_rows(blobs: list[bytes | memoryview]) -> np.ndarray:
    """Stored vectors (of one size) as unit rows, in one pass."""
    matrix = encoder.from_bytes(b"".join(bytes(blob) for blob in blobs)).reshape(len(blobs), -1)
    return encoder.normalize(matrix)


def _select(template: str, ids: Sequence[int]) -> list[tuple]:
    if not ids:
        return []
    sql = _statement(template, connection.vendor).replace("{ids}", ", ".join(["%s"] * len(ids)))
    with connection.cursor() as cursor:
        cursor.execute(sql, list(ids))
        return cursor.fetchall()


@lru_cache(maxsize=32)
def _statement(template: str, vendor: str) -> str:
    """``template`` with the tables and columns quoted for ``vendor`` (its quoting is the
    backend's own, the same on every connection), the ids' placeholders left to fill: worked out
    once, not on every page."""
    quote = connection.ops.quote_name
    links = Image.labels.through._meta
    names = {
        "images": quote(Image._meta.db_table),
        "labels": quote(Label._meta.db_table),
        "links": quote(links.db_table),
        "image_id": quote(links.get_field("image").column),
        "label_id": quote(links.get_field("label").column),
        "pk": quote(Image._meta.pk.column),  # Label's too: both are plain "id" keys
        "name": quote(Label._meta.get_field("name").column),
        "vector": quote(Label._meta.get_field("vector").column),
        "image_vector": quote(Image._meta.get_field("image_vector").column),
        "hybrid_weight": quote(Image._meta.get_field("hybrid_weight").column),
        "ids": "{ids}",
    }
    return template.format(**names)
