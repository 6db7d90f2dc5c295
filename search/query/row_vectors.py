"""The stored parts behind results' scores: each row's image vector, hybrid weight and label
vector (the normalised mean of its labels' text vectors, as the hybrid was made from them).

Read for the rows of one page (the explanations) or for the candidates an emphasis re-ranks:
three queries, whatever the number of rows, and the label names of the rows come with them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from gallery.models import Image, Label

from .. import encoder
from .explain import RowVectors


def rows_vectors(ids: Sequence[int], *, images: Iterable[Image] = ()) -> dict[int, RowVectors]:
    """The stored parts of the rows ``ids`` that have an image vector. The label names of
    ``images`` (rows among ``ids``) are loaded on the way (``Image.label_names``)."""
    ids = list(dict.fromkeys(ids))
    links = (
        Image.labels.through.objects.filter(image_id__in=ids)
        .order_by("label__name")
        .values_list("image_id", "label_id", "label__name")
    )
    labels_of: dict[int, list[int]] = {pk: [] for pk in ids}
    names_of: dict[int, list[str]] = {pk: [] for pk in ids}
    for image_id, label_id, name in links:
        labels_of[image_id].append(label_id)
        names_of[image_id].append(name)
    for image in images:
        image.__dict__["_label_names"] = names_of.get(image.pk, [])
    wanted = {label_id for found in labels_of.values() for label_id in found}
    label_vectors = {
        pk: encoder.normalize(encoder.from_bytes(blob).reshape(1, -1))[0]
        for pk, blob in Label.objects.filter(pk__in=wanted, vector__isnull=False).values_list("pk", "vector")
    }
    found: dict[int, RowVectors] = {}
    rows = Image.objects.filter(pk__in=ids, image_vector__isnull=False)
    for pk, blob, weight in rows.values_list("pk", "image_vector", "hybrid_weight"):
        parts = [label_vectors[label_id] for label_id in labels_of[pk] if label_id in label_vectors]
        label_vector = encoder.normalize(np.mean(parts, axis=0, keepdims=True))[0] if parts else None
        image_vector = encoder.normalize(encoder.from_bytes(blob).reshape(1, -1))[0]
        found[pk] = RowVectors(image_vector, label_vector, 0.5 if weight is None else float(weight))
    return found
