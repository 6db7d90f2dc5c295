"""Precision against score, estimated from queries whose right answers are known: arrays in,
arrays out (numpy only, no database).

A calibration query is a vector scored against every image of a sample; its right answers are the
images that carry the label it stands for. Pooled over many queries, the results at or above a
score ``t`` are a fraction ``precision(t)`` right. :class:`Curve` keeps that function at about a
hundred scores, enough to answer any level from 0.5 to 0.99 later (:meth:`Curve.threshold`).

:func:`label_queries` builds the two kinds of query from a sample of the library:

* ``text``: each label's text vector, its right answers the sample's images that carry the label;
* ``image``: a few images of each label, their right answers the label's other images (the query
  image itself is left out, so that it never vouches for its own label).

Scores are whatever the caller scores against: the library scores against the stored hybrids,
which is what a default search ranks by.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

KINDS = ("text", "image")
#: Score resolution of the pooled counts: bins of 2 / BINS over [-1, 1]. Counting into bins is
#: linear in the results (no sort), and a threshold at a bin's lower edge counts exactly the
#: results at or above it.
BINS = 8192
#: A threshold keeps at least this many pooled results at or above it: the top of the curve,
#: made of a handful of results, is too noisy to set a cut-off by.
MIN_SUPPORT = 20
#: Where the curve is kept: at the exact threshold of each of these levels, and at these shares
#: of the right answers found (recall, denser near the top) so that the levels between are close.
LEVEL_POINTS = np.round(np.arange(0.45, 0.995, 0.01), 2)
RECALL_POINTS = np.unique(np.concatenate([np.geomspace(0.002, 0.05, 10), np.linspace(0.05, 1.0, 30)]))
#: Calibration needs labels with at least this many images of the sample each, and this many labels.
MIN_IMAGES = 5
MIN_LABELS = 3
MAX_LABELS = 200  # chosen deterministically from those with enough images
IMAGE_QUERIES_PER_LABEL = 3
QUERY_CHUNK = 64  # queries scored at a time: memory stays at QUERY_CHUNK x sample scores
TOO_FEW = (
    "Too few labelled images to calibrate: {found} label(s) have at least {min_images} images;"
    " at least {min_labels} are needed."
)


@dataclass(frozen=True)
class Curve:
    """The pooled precision at a set of scores, highest score first.

    ``scores[i]``: a score threshold; ``precision[i]``: the share of right answers among all the
    pooled results scoring at or above it; ``results[i]``: how many results that is.
    """

    scores: np.ndarray
    precision: np.ndarray
    results: np.ndarray

    def threshold(self, level: float) -> float | None:
        """The lowest kept score ``t`` such that the pooled results at or above ``t`` are at
        least ``level`` right and number at least ``MIN_SUPPORT``; None when no score qualifies.

        The lowest such score, not the score below which precision first dips under ``level``
        counting from the top: precision of the top few results jumps up and down with each
        one (one wrong result among the first five is 0.8), and a rule that stopped at the
        first dip would be set by that noise. The lowest crossing keeps the largest set of
        results whose pooled precision is still ``level``, which is what a cut-off promises.
        """
        ok = (self.precision >= level) & (self.results >= MIN_SUPPORT)
        if not ok.any():
            return None
        return float(self.scores[ok].min())

    def to_json(self) -> list[list[float]]:
        return [
            [float(s), round(float(p), 5), int(n)]
            for s, p, n in zip(self.scores, self.precision, self.results, strict=True)
        ]

    @classmethod
    def from_json(cls, points: list[list[float]]) -> Curve:
        array = np.array(points, dtype=np.float64).reshape(-1, 3)
        return cls(scores=array[:, 0], precision=array[:, 1], results=array[:, 2].astype(np.int64))


@dataclass
class Pool:
    """Counts of pooled results per score bin, right and wrong apart: add queries, then read
    the :class:`Curve`."""

    right: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    total: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    queries: int = 0

    def add(self, scores: np.ndarray, is_right: np.ndarray, *, queries: int = 1) -> None:
        """Results of ``queries`` queries (any shape; ``is_right`` the same shape, False where a
        result is wrong, and results to leave out are simply not passed)."""
        bins = _bins(np.asarray(scores).ravel())
        self.total += np.bincount(bins, minlength=BINS)
        self.right += np.bincount(bins[np.asarray(is_right, dtype=bool).ravel()], minlength=BINS)
        self.queries += queries

    def curve(self) -> Curve:
        # From the top bin down: results and right answers at or above each bin's lower edge.
        total = np.cumsum(self.total[::-1])[::-1]
        right = np.cumsum(self.right[::-1])[::-1]
        if not right[0]:
            return Curve(np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
        # For each recall point, the highest bin whose results reach it.
        wanted = np.ceil(RECALL_POINTS * right[0])
        ascending = right[::-1]  # non-decreasing as the bin goes down
        at_recall = BINS - 1 - np.searchsorted(ascending, wanted, side="left")
        # For each level, the lowest bin that reaches it (the exact threshold of that level),
        # moved up to the bin of the lowest result it keeps: the empty bins below it keep the
        # same results, and a threshold in such a gap would admit fresh results no
        # calibration result vouched for.
        precision = right / np.maximum(total, 1)
        supported = total >= MIN_SUPPORT
        lowest = [np.flatnonzero(supported & (precision >= level)) for level in LEVEL_POINTS]
        occupied = np.flatnonzero(self.total)
        at_level = [occupied[np.searchsorted(occupied, bins.min())] for bins in lowest if len(bins)]
        picked = np.unique(np.concatenate([at_recall, at_level]).astype(np.int64))
        picked = picked[::-1].astype(np.int64)
        edges = -1.0 + 2.0 * picked / BINS
        return Curve(scores=edges, precision=precision[picked], results=total[picked])


def pooled(queries: Iterable[tuple[np.ndarray, np.ndarray]]) -> Curve:
    """The curve of these queries' (scores, is-right) arrays, pooled."""
    pool = Pool()
    for scores, is_right in queries:
        pool.add(scores, is_right)
    return pool.curve()


@dataclass(frozen=True)
class Estimate:
    """What :func:`label_queries` found: a curve per kind, or none and ``note`` saying why."""

    curves: dict[str, Curve]
    labels: int  # labels used as queries
    eligible: int  # labels with at least MIN_IMAGES images in the sample
    queries: dict[str, int]
    note: str = ""


def label_queries(
    hybrids: np.ndarray,
    image_vectors: np.ndarray,
    members: np.ndarray,
    text: np.ndarray,
    *,
    seed: int = 0,
) -> Estimate:
    """Calibrate on a sample: ``hybrids`` and ``image_vectors`` (N, d), L2-normalised, row ``i``
    one image; ``members`` (M, 2) the (image row, label row) pairs of the labels the images
    carry; ``text`` (L, d) the labels' text vectors. Labels with at least ``MIN_IMAGES`` images
    serve, at most ``MAX_LABELS`` of them, chosen by ``seed`` (the same inputs give the same
    curves); fewer than ``MIN_LABELS`` gives no curves and a note."""
    counts = np.bincount(members[:, 1], minlength=len(text)) if len(members) else np.zeros(len(text), int)
    eligible = np.flatnonzero(counts >= MIN_IMAGES)
    if len(eligible) < MIN_LABELS:
        note = TOO_FEW.format(found=len(eligible), min_images=MIN_IMAGES, min_labels=MIN_LABELS)
        return Estimate(curves={}, labels=0, eligible=len(eligible), queries={}, note=note)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(eligible, size=min(MAX_LABELS, len(eligible)), replace=False))
    # right[l] = membership of chosen label l over the sample's images.
    right = np.zeros((len(chosen), len(hybrids)), dtype=bool)
    row_of = np.full(len(text), -1)
    row_of[chosen] = np.arange(len(chosen))
    pairs = members[row_of[members[:, 1]] >= 0]
    right[row_of[pairs[:, 1]], pairs[:, 0]] = True

    text_pool, image_pool = Pool(), Pool()
    for start in range(0, len(chosen), QUERY_CHUNK):
        part = slice(start, start + QUERY_CHUNK)
        text_pool.add(text[chosen[part]] @ hybrids.T, right[part], queries=len(right[part]))
    for rows, queries, labels in _image_queries(right, rng):
        scores = image_vectors[queries] @ hybrids.T
        is_right = right[labels]
        keep = np.ones_like(is_right)
        keep[np.arange(len(queries)), queries] = False  # the query image is not one of its answers
        image_pool.add(scores[keep], is_right[keep], queries=rows)
    return Estimate(
        curves={"text": text_pool.curve(), "image": image_pool.curve()},
        labels=len(chosen),
        eligible=len(eligible),
        queries={"text": text_pool.queries, "image": image_pool.queries},
    )


def _image_queries(
    right: np.ndarray, rng: np.random.Generator
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Chunks of (count, query image rows, their label rows): ``IMAGE_QUERIES_PER_LABEL``
    images of each label, drawn by ``rng``."""
    queries: list[int] = []
    labels: list[int] = []
    for label, row in enumerate(right):
        images = np.flatnonzero(row)
        for image in rng.choice(images, size=min(IMAGE_QUERIES_PER_LABEL, len(images)), replace=False):
            queries.append(int(image))
            labels.append(label)
    for start in range(0, len(queries), QUERY_CHUNK):
        q = np.array(queries[start : start + QUERY_CHUNK])
        yield len(q), q, np.array(labels[start : start + QUERY_CHUNK])


def _bins(scores: np.ndarray) -> np.ndarray:
    return np.clip(((scores.astype(np.float64) + 1.0) * (BINS / 2.0)).astype(np.int64), 0, BINS - 1)
