"""Why a result is there: the part of its score that comes from its picture and the part that
comes from its labels, computed from the vectors the row stores.

A row's hybrid is ``h = (w * I + (1 - w) * L) / N`` (``I`` its image vector, ``L`` the normalised
mean of its labels' vectors, ``w`` the hybrid weight, ``N`` the length that makes ``h`` a unit
vector). So the score of the default ranking splits exactly in two::

    q . h  =  (w / N) * cos(q, I)  +  ((1 - w) / N) * cos(q, L)
              \\____ picture ____/     \\_______ labels ______/

With an emphasis ``alpha`` (0: "labelled as", 1: "looks like") a result scores
``alpha * cos(q, I) + (1 - alpha) * cos(q, L)`` instead, split the same way. An image without
labels has a hybrid equal to its picture: its label part is 0.

A query of several parts (words and an image, or words with words to leave out) is
``q = sum(c_j * u_j)``: each part's share of the picture and label parts is ``c_j`` times its
own cosines, and the shares add up to the two parts.

Everything here is numpy on vectors already read; :mod:`search.query.row_vectors` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QueryPart:
    """One part of a query: ``name`` ("words", "image", "image in the library", "left out"), its
    unit vector and its coefficient in the query vector (negative for words left out)."""

    name: str
    coefficient: float
    vector: np.ndarray


@dataclass(frozen=True)
class QueryVector:
    """The unit vector a search asks the store with, and the parts it is made of."""

    vector: np.ndarray  # 1 x d
    parts: tuple[QueryPart, ...]

    @classmethod
    def single(cls, name: str, vector: np.ndarray) -> QueryVector:
        unit = np.asarray(vector, dtype=np.float32).reshape(-1)
        return cls(unit.reshape(1, -1), (QueryPart(name, 1.0, unit),))

    @classmethod
    def combined(cls, parts: list[QueryPart]) -> QueryVector:
        """``normalize(sum(c_j * u_j))``, with the coefficients rescaled by that norm so that the
        query is exactly the sum of its parts."""
        total = sum(part.coefficient * np.asarray(part.vector, dtype=np.float64) for part in parts)
        norm = float(np.linalg.norm(total)) or 1.0
        scaled = tuple(QueryPart(p.name, p.coefficient / norm, p.vector) for p in parts)
        return cls((total / norm).astype(np.float32).reshape(1, -1), scaled)


@dataclass(frozen=True)
class RowVectors:
    """What one row stores for its score: the image vector, the normalised mean of its labels'
    vectors (None without labels) and the weight its hybrid was made with."""

    image: np.ndarray
    labels: np.ndarray | None
    weight: float


@dataclass(frozen=True)
class PartShare:
    name: str
    picture: float
    labels: float


@dataclass(frozen=True)
class Explanation:
    """A score and its two parts, ``score == picture + labels``."""

    score: float
    picture: float
    labels: float
    picture_cosine: float  # cos(query, image vector)
    labels_cosine: float | None  # cos(query, label vector); None: the image has no labels
    picture_weight: float  # the factor of picture_cosine in the score
    labels_weight: float
    shares: tuple[PartShare, ...]  # each query part's share (more than one part only)


def explain(query: QueryVector, row: RowVectors, *, alpha: float | None = None) -> Explanation:
    """The score of ``row`` for ``query`` and its picture and label parts."""
    return explain_many(query, [row], alpha=alpha)[0]


def _part_weights_many(
    images: np.ndarray, labels: np.ndarray, has_labels: np.ndarray, w: np.ndarray, alpha: float | None
) -> np.ndarray:
    """The factors of cos(q, image) and cos(q, labels) in each row's score (n x 2): the hybrid's
    own (``w / N``, ``(1 - w) / N``) without an emphasis, else (``alpha``, ``1 - alpha``); a row
    without labels owes its score to its picture."""
    if alpha is not None:
        picture, label = np.full(len(w), alpha), np.where(has_labels, 1.0 - alpha, 0.0)
    else:
        mixed = w[:, None] * images + (1.0 - w)[:, None] * labels
        norm = np.linalg.norm(mixed, axis=1)
        norm = np.where(norm > 0, norm, 1.0)
        picture = np.where(has_labels, w / norm, 1.0)
        label = np.where(has_labels, (1.0 - w) / norm, 0.0)
    return np.stack([picture, label], axis=1)


def explain_many(
    query: QueryVector, rows: list[RowVectors], *, alpha: float | None = None
) -> list[Explanation]:
    """The scores of many rows and their picture and label parts, at once: every cosine of every
    query part in one matrix product (a page of results is explained in about the time of one
    row explained alone)."""
    if not rows:
        return []
    images = np.stack([row.image for row in rows]).astype(np.float64)
    has_labels = np.array([row.labels is not None for row in rows])
    labels = np.stack([row.labels if row.labels is not None else row.image for row in rows]).astype(
        np.float64
    )
    weights = _part_weights_many(images, labels, has_labels, np.array([row.weight for row in rows]), alpha)
    units = np.stack([np.asarray(p.vector, dtype=np.float64).reshape(-1) for p in query.parts])  # m x d
    coefficients = np.array([p.coefficient for p in query.parts])[:, None]
    picture_cos, label_cos = units @ images.T, np.where(has_labels, units @ labels.T, 0.0)  # m x n
    picture_shares = coefficients * weights[:, 0] * picture_cos
    label_shares = coefficients * weights[:, 1] * label_cos
    q = np.asarray(query.vector, dtype=np.float64).reshape(-1)
    # Python floats at once (``tolist``): a float() per number costs more than the arithmetic.
    picture_cosines, label_cosines = (images @ q).tolist(), (labels @ q).tolist()
    picture_weights, label_weights = weights[:, 0].tolist(), weights[:, 1].tolist()
    picture_parts, label_parts = picture_shares.tolist(), label_shares.tolist()
    names = [p.name for p in query.parts]
    found = []
    for i, labelled in enumerate(has_labels.tolist()):
        if len(names) == 1:  # one part: its share is the whole score, and is not listed
            shares: tuple[PartShare, ...] = ()
            picture, label_part = picture_parts[0][i], label_parts[0][i]
        else:
            shares = tuple(
                PartShare(name, picture_parts[j][i], label_parts[j][i]) for j, name in enumerate(names)
            )
            picture = sum(share.picture for share in shares)
            label_part = sum(share.labels for share in shares)
        found.append(
            Explanation(
                score=picture + label_part,
                picture=picture,
                labels=label_part,
                picture_cosine=picture_cosines[i],
                labels_cosine=label_cosines[i] if labelled else None,
                picture_weight=picture_weights[i],
                labels_weight=label_weights[i],
                shares=shares,
            )
        )
    return found


def scores(
    query: np.ndarray, images: np.ndarray, labels: np.ndarray, has_labels: np.ndarray, alpha: float
) -> np.ndarray:
    """``alpha * cos(q, image) + (1 - alpha) * cos(q, labels)`` of many rows at once (``labels``
    rows of images without labels are ignored: their label part is 0), as :func:`explain` gives
    them one by one."""
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    label_cos = np.where(has_labels, labels @ q, 0.0)
    return alpha * (images @ q) + (1.0 - alpha) * label_cos
