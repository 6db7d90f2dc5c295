"""Scores recomputed by hand from what the rows store, independently of search.query.explain."""

from __future__ import annotations

import numpy as np

from gallery.models import Image
from search import encoder


def stored_parts(image_id: int) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(image vector, label vector or None, hybrid weight) of a row, as the hybrid was made."""
    image = Image.objects.get(pk=image_id)
    picture = encoder.normalize(encoder.from_bytes(image.image_vector).reshape(1, -1))[0]
    vectors = [encoder.from_bytes(label.vector) for label in image.labels.all()]
    if not vectors:
        return picture, None, image.hybrid_weight
    labels = encoder.normalize(np.stack(vectors))
    return picture, encoder.normalize(labels.mean(axis=0, keepdims=True))[0], image.hybrid_weight


def alpha_score(query: np.ndarray, image_id: int, alpha: float) -> float:
    """``alpha * cos(q, image) + (1 - alpha) * cos(q, labels)`` (labels: 0 without any)."""
    picture, labels, _ = stored_parts(image_id)
    q = np.asarray(query, dtype=np.float64).reshape(-1)
    return alpha * float(q @ picture) + (1 - alpha) * (float(q @ labels) if labels is not None else 0.0)


def hybrid_score(query: np.ndarray, image_id: int) -> float:
    """cos(q, stored hybrid)."""
    hybrid = encoder.from_bytes(Image.objects.get(pk=image_id).hybrid_vector)
    return float(np.asarray(query, dtype=np.float64).reshape(-1) @ hybrid)
