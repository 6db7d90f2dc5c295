"""The stored parts behind results' scores: each row's image vector, hybrid weight and label
vector (the normalised mean of its labels' text vectors, as the hybrid was made from them).

Read for the rows of one page (the explanations) or for the candidates an emphasis re-ranks:
three plain queries, whatever the number of rows, and the label names of the rows come with
them. Plain SQL and one numpy pass over all the vectors: on every search page, building three
ORM queries and normalising vector by vector cost more than the rest of the explanation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from django.db import connection

from gallery.models import Image, Label

from .. import encoder
from .explain import RowVectors


def rows_vectors(ids: Sequence[int], *, images: Iterable[Image] = ()) -> dict[int, RowVectors]:
    """The stored parts of the rows ``ids`` that have an image vector. The label names of
    ``images`` (rows among ``ids``) are loaded on the way (``Image.label_names``)."""
    ids = list(dict.fromkeys(int(pk) for pk in ids))
    if not ids:
        return {}
    links = _select(
        "SELECT l.{image_id}, l.{label_id}, t.{name} FROM {links} l JOIN {labels} t ON t.{pk} = l.{label_id}"
        " WHERE l.{image_id} IN ({ids}) ORDER BY t.{name}",
        ids,
    )
    names_of: dict[int, list[str]] = {pk: [] for pk in ids}
    for image_id, _, name in links:
        names_of[image_id].append(name)
    for image in images:
        image.__dict__["_label_names"] = names_of.get(image.pk, [])
    wanted = sorted({label_id for _, label_id, _ in links})
    label_rows = _select(
        "SELECT {pk}, {vector} FROM {labels} WHERE {pk} IN ({ids}) AND {vector} IS NOT NULL", wanted
    )
    image_rows = _select(
        "SELECT {pk}, {image_vector}, {hybrid_weight} FROM {images} WHERE {pk} IN ({ids})"
        " AND {image_vector} IS NOT NULL",
        ids,
    )
    if not image_rows:
        return {}
    pictures = _unit_rows([blob for _, blob, _ in image_rows])
    position = {pk: i for i, (pk, _) in enumerate(label_rows)}
    label_vectors = _unit_rows([blob for _, blob in label_rows]) if label_rows else None
    carried: dict[int, list[int]] = {}
    for image_id, label_id, _ in links:
        if label_id in position:
            carried.setdefault(image_id, []).append(position[label_id])
    found: dict[int, RowVectors] = {}
    for row, (pk, _, weight) in enumerate(image_rows):
        mine = carried.get(pk)
        labels = None
        if mine and label_vectors is not None and label_vectors.shape[1] == pictures.shape[1]:
            labels = encoder.normalize(label_vectors[mine].mean(axis=0, keepdims=True))[0]
        found[pk] = RowVectors(pictures[row], labels, 0.5 if weight is None else float(weight))
    return found


def _unit_rows(blobs: list[bytes | memoryview]) -> np.ndarray:
    """Stored vectors (of one size) as unit rows, in one pass."""
    matrix = encoder.from_bytes(b"".join(bytes(blob) for blob in blobs)).reshape(len(blobs), -1)
    return encoder.normalize(matrix)


def _select(template: str, ids: Sequence[int]) -> list[tuple]:
    if not ids:
        return []
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
        "ids": ", ".join(["%s"] * len(ids)),
    }
    with connection.cursor() as cursor:
        cursor.execute(template.format(**names), list(ids))
        return cursor.fetchall()
