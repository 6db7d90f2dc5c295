"""How well each label fits each image, as a calibrated probability; and which labelled images sit
far from their own label's other images. Arrays in, arrays out: no database.

Two features for an image ``i`` and a label ``l``, each taken relative to what is typical for
``l`` (the median over the images that carry it), so that a label whose images are all alike and
a label whose images vary are judged each by its own spread:

* ``text``: the cosine of the image vector and the label's text vector (CLIP's zero-shot score
  against the library's own vocabulary);
* ``picture``: the cosine of the image vector and the mean of the image vectors of the label's
  images (leave-one-out for an image that carries it, so that its own vector never vouches for it).

A logistic model on the two features is fitted on the images that already carry labels: each of
their labels is a positive, and the labels they do not carry that would have been suggested (the
best-scored by the raw features) are negatives. Its output is therefore calibrated as the chance
that a suggestion of that rank and score is a label staff gave; it learns from the library how far
the text vectors can be trusted (with a model whose text and image towers disagree, the picture
feature carries the weight).

A likely mislabel is a labelled image far from its label's other images: its similarity to its
nearest fellow members (the mean of the best ``NEAREST``) lies more than ``MISLABEL_SPREADS``
robust spreads (1.4826 x the median absolute deviation, over the label's images, of that same
measure) below the label's median. Nearest members rather than the label's mean: a label may hold
several kinds of picture (breeds of dog), and an image of a rarer kind still has its like nearby;
a mislabelled one has none. And only where another label fits it better, with a confidence of at
least ``MIN_BETTER_CONFIDENCE``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CANDIDATES = 5  # labels considered per image: the best by raw score
MIN_MEMBERS_FOR_OWN_MEDIAN = 3  # fewer: a label's typical score is the library-wide one
MIN_MEMBERS_FOR_SPREAD = 5  # a label's spread (for mislabels) needs this many images
MIN_SPREAD = 0.01  # a label of near-identical images: no cut-off tighter than this
MISLABEL_SPREADS = 3.0
MIN_BETTER_CONFIDENCE = 0.5  # a mislabel is listed only with a label likelier right than not
NEAREST = 2  # fellow members whose similarity makes an image's closeness to its label
MAX_REFERENCE = 512  # a larger label is compared against this many of its images (a sample)
MIN_TRAINING = 5  # positives and negatives each, or the model is not fitted
MAX_TRAINING_PAIRS = 200_000
CHUNK = 4096


@dataclass(frozen=True)
class LabelStats:
    """What each label looks like, from the images that carry it (``L`` labels, dimension ``d``)."""

    text: np.ndarray  # (L, d) text vectors
    sums: np.ndarray  # (L, d) sum of the members' image vectors
    counts: np.ndarray  # (L,) members
    text_median: np.ndarray  # (L,) typical text feature of a member
    picture_median: np.ndarray  # (L,) typical (leave-one-out) picture feature of a member
    member_text: np.ndarray  # (M,) raw text feature of each (image, label it carries) pair
    member_picture: np.ndarray  # (M,) its leave-one-out picture feature (NaN: the label's only image)


@dataclass(frozen=True)
class Calibration:
    weights: np.ndarray  # (2,) for (text, picture), relative to each label's median
    bias: float
    positives: int
    negatives: int

    def probability(self, text: np.ndarray, picture: np.ndarray) -> np.ndarray:
        return _sigmoid(self.weights[0] * text + self.weights[1] * picture + self.bias)


@dataclass(frozen=True)
class Suggestion:
    image: int  # row index into the image arrays
    label: int  # row index into the label arrays
    confidence: float


@dataclass(frozen=True)
class Mislabel:
    image: int
    label: int  # the label it carries
    better: int  # the label that fits it better
    spreads: float  # how many of its label's spreads below the label's median it lies
    better_confidence: float


def label_stats(vectors: np.ndarray, text: np.ndarray, members: np.ndarray) -> LabelStats:
    """``vectors``: (N, d) image vectors; ``text``: (L, d) label text vectors; ``members``: (M, 2)
    pairs (image row, label row)."""
    n_labels = len(text)
    from scipy import sparse  # lazily: only the worker's pass needs it

    ones = np.ones(len(members), np.float32)
    membership = sparse.csr_matrix((ones, (members[:, 1], members[:, 0])), shape=(n_labels, len(vectors)))
    sums = np.asarray(membership @ vectors)
    counts = np.bincount(members[:, 1], minlength=n_labels)
    sums = sums.astype(np.float32, copy=False)
    text_f, picture_f = member_features(vectors, text, sums, counts, members)
    stats = LabelStats(
        text=text,
        sums=sums,
        counts=counts,
        text_median=np.zeros(n_labels, np.float32),
        picture_median=np.zeros(n_labels, np.float32),
        member_text=text_f,
        member_picture=picture_f,
    )
    text_median, picture_median = stats.text_median, stats.picture_median
    usable = np.isfinite(picture_f)
    global_text = float(np.median(text_f)) if len(text_f) else 0.0
    global_picture = float(np.median(picture_f[usable])) if usable.any() else 0.0
    order = np.argsort(members[:, 1], kind="stable")
    bounds = np.searchsorted(members[order, 1], np.arange(n_labels + 1))
    for label in range(n_labels):
        rows = order[bounds[label] : bounds[label + 1]]
        own_text, own_picture = text_f[rows], picture_f[rows]
        own_picture = own_picture[np.isfinite(own_picture)]
        text_median[label] = np.median(own_text) if len(rows) >= MIN_MEMBERS_FOR_OWN_MEDIAN else global_text
        picture_median[label] = (
            np.median(own_picture) if len(own_picture) >= MIN_MEMBERS_FOR_OWN_MEDIAN else global_picture
        )
    return stats


def member_features(
    vectors: np.ndarray, text: np.ndarray, sums: np.ndarray, counts: np.ndarray, members: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Raw (text, leave-one-out picture) features of each (image, label it carries) pair; the
    picture feature is NaN where the image is its label's only one. In chunks of pairs, so that
    the gathered rows stay small."""
    out_text = np.empty(len(members), np.float32)
    out_picture = np.empty(len(members), np.float32)
    sums_sq = np.einsum("ij,ij->i", sums, sums)
    step = 16_384
    for start in range(0, len(members), step):
        pairs = members[start : start + step]
        v, labels = vectors[pairs[:, 0]], pairs[:, 1]
        own = np.einsum("ij,ij->i", v, v)
        dots = np.einsum("ij,ij->i", v, sums[labels])
        rest_sq = sums_sq[labels] - 2 * dots + own
        with np.errstate(invalid="ignore", divide="ignore"):
            picture = (dots - own) / np.sqrt(rest_sq)
        picture[(counts[labels] < 2) | (rest_sq <= 1e-9)] = np.nan
        out_text[start : start + step] = np.einsum("ij,ij->i", v, text[labels])
        out_picture[start : start + step] = picture
    return out_text, out_picture


def _relative(stats: LabelStats, text: np.ndarray, dots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features of images against every label, for labels the images do not carry."""
    norms = np.sqrt(np.maximum(np.einsum("ij,ij->i", stats.sums, stats.sums), 1e-12))
    return text - stats.text_median, dots / norms - stats.picture_median


def _chunks(vectors: np.ndarray, stats: LabelStats):
    for start in range(0, len(vectors), CHUNK):
        block = vectors[start : start + CHUNK]
        yield start, *_relative(stats, block @ stats.text.T, block @ stats.sums.T)


@dataclass(frozen=True)
class Candidates:
    """Each image's ``CANDIDATES`` best labels by raw score among those it does not carry, with
    their features relative to each label's median (computed once per pass: the calibration is
    fitted on the labelled images' candidates and the suggestions are taken among the same)."""

    labels: np.ndarray  # (N, K) label rows; -1 where an image has fewer candidates
    text: np.ndarray  # (N, K)
    picture: np.ndarray  # (N, K)


def candidates(vectors: np.ndarray, stats: LabelStats, members: np.ndarray) -> Candidates:
    n_labels = len(stats.text)
    k = min(CANDIDATES, n_labels)
    labels = np.full((len(vectors), k), -1, np.int64)
    text_out = np.zeros((len(vectors), k), np.float32)
    picture_out = np.zeros((len(vectors), k), np.float32)
    carried = _carried_mask_factory(members)
    for start, text, picture in _chunks(vectors, stats):
        rows = np.arange(start, start + len(text))
        raw = text + picture
        raw[carried(rows, n_labels)] = -np.inf
        top = np.argpartition(-raw, k - 1, axis=1)[:, :k]
        r = np.arange(len(rows))[:, None]
        labels[rows] = np.where(np.isfinite(raw[r, top]), top, -1)
        text_out[rows], picture_out[rows] = text[r, top], picture[r, top]
    return Candidates(labels=labels, text=text_out, picture=picture_out)


def calibrate(
    stats: LabelStats, members: np.ndarray, found: Candidates, labelled: np.ndarray
) -> Calibration | None:
    """Fit the logistic model on the labelled images (``labelled``: their rows): their labels are
    the positives, their candidates the negatives. None when there are too few of either."""
    text_f, picture_f = stats.member_text, stats.member_picture
    keep = np.isfinite(picture_f)
    pos = np.stack(
        [
            text_f[keep] - stats.text_median[members[keep, 1]],
            picture_f[keep] - stats.picture_median[members[keep, 1]],
        ],
        axis=1,
    )
    valid = found.labels[labelled] >= 0
    neg = np.stack([found.text[labelled][valid], found.picture[labelled][valid]], axis=1)
    if len(pos) < MIN_TRAINING or len(neg) < MIN_TRAINING:
        return None
    rng = np.random.default_rng(0)
    if len(pos) > MAX_TRAINING_PAIRS // 2:
        pos = pos[rng.choice(len(pos), MAX_TRAINING_PAIRS // 2, replace=False)]
    if len(neg) > MAX_TRAINING_PAIRS // 2:
        neg = neg[rng.choice(len(neg), MAX_TRAINING_PAIRS // 2, replace=False)]
    x = np.concatenate([pos, neg]).astype(np.float64)
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    weights, bias = _logistic_fit(x, y)
    return Calibration(weights=weights, bias=bias, positives=len(pos), negatives=len(neg))


def _carried_mask_factory(members: np.ndarray):
    """A function: image rows -> (rows, L) boolean mask of the labels each carries."""
    order = np.argsort(members[:, 0], kind="stable")
    sorted_images = members[order, 0]

    def carried(rows: np.ndarray, n_labels: int) -> np.ndarray:
        mask = np.zeros((len(rows), n_labels), bool)
        lo = np.searchsorted(sorted_images, rows, side="left")
        hi = np.searchsorted(sorted_images, rows, side="right")
        for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
            mask[i, members[order[a:b], 1]] = True
        return mask

    return carried


def _logistic_fit(
    x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, steps: int = 25
) -> tuple[np.ndarray, float]:
    """Newton's method on the L2-regularised log-loss (three parameters: it converges in a few
    steps); classes weighted equally, so that the many negatives do not drown the positives."""
    # Standardised features, so that the penalty means the same whatever the spread of cosines
    # (a random-weight model's differences are hundredths; a trained CLIP's tenths).
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    x = (x - mean) / scale
    design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    balance = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    theta = np.zeros(design.shape[1])
    penalty = np.diag([l2, l2, 0.0])
    for _ in range(steps):
        p = _sigmoid(design @ theta)
        gradient = design.T @ (balance * (p - y)) + penalty @ theta
        hessian = (design * (balance * p * (1 - p))[:, None]).T @ design + penalty + 1e-9 * np.eye(3)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    # Balanced classes shift the bias: put back the real share of positives among candidates.
    prior = y.mean()
    theta[2] += np.log(prior / (1 - prior)) if 0 < prior < 1 else 0.0
    weights = theta[:2] / scale
    return weights.astype(np.float32), float(theta[2] - (weights * mean).sum())


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def suggestions(
    found: Candidates,
    calibration: Calibration,
    *,
    refused: np.ndarray,
    per_image: int,
    min_confidence: float,
) -> list[Suggestion]:
    """Up to ``per_image`` of each image's candidates, leaving out those staff refused for it
    (``refused``: (R, 2) pairs of image row and label row), with their confidence, best first."""
    p = calibration.probability(found.text, found.picture)
    p[found.labels < 0] = -1.0
    if len(refused):
        n = int(max(found.labels.max(initial=0), refused[:, 1].max()) + 1)
        keys = np.arange(len(p))[:, None] * n + found.labels
        p[np.isin(keys, refused[:, 0] * n + refused[:, 1])] = -1.0
    order = np.argsort(-p, axis=1, kind="stable")[:, :per_image]
    r = np.arange(len(p))[:, None]
    chosen_p, chosen_label = p[r, order], found.labels[r, order]
    rows, slots = np.nonzero(chosen_p >= min_confidence)
    return [
        Suggestion(int(row), int(chosen_label[row, slot]), float(chosen_p[row, slot]))
        for row, slot in zip(rows, slots, strict=True)
    ]


def closeness_spreads(vectors: np.ndarray, members: np.ndarray, n_labels: int) -> np.ndarray:
    """For each (image, label) pair of ``members``: how many of the label's robust spreads the
    image's closeness to its label (mean cosine to its ``NEAREST`` nearest fellow members) lies
    below the label's median closeness. NaN for labels with fewer than ``MIN_MEMBERS_FOR_SPREAD``
    images. A label over ``MAX_REFERENCE`` images is compared against a fixed sample of them."""
    out = np.full(len(members), np.nan, np.float32)
    order = np.argsort(members[:, 1], kind="stable")
    bounds = np.searchsorted(members[order, 1], np.arange(n_labels + 1))
    rng = np.random.default_rng(0)
    for label in range(n_labels):
        rows = order[bounds[label] : bounds[label + 1]]
        if len(rows) < MIN_MEMBERS_FOR_SPREAD:
            continue
        own = vectors[members[rows, 0]]
        reference = np.arange(len(rows))
        if len(rows) > MAX_REFERENCE:
            reference = np.sort(rng.choice(len(rows), MAX_REFERENCE, replace=False))
        closeness = np.empty(len(rows), np.float32)
        for start in range(0, len(rows), CHUNK):
            sims = own[start : start + CHUNK] @ own[reference].T
            # An image is never its own fellow member.
            mine = np.nonzero(reference[None, :] == np.arange(start, start + len(sims))[:, None])
            sims[mine] = -np.inf
            k = min(NEAREST, sims.shape[1] - 1)
            nearest = -np.partition(-sims, k - 1, axis=1)[:, :k]
            closeness[start : start + len(sims)] = nearest.mean(axis=1)
        median = float(np.median(closeness))
        spread = max(1.4826 * float(np.median(np.abs(closeness - median))), MIN_SPREAD)
        out[rows] = (median - closeness) / spread
    return out


def mislabels(
    vectors: np.ndarray, stats: LabelStats, members: np.ndarray, found: Candidates, calibration: Calibration
) -> list[Mislabel]:
    """The (image, label it carries) pairs far from that label's other images (by the label's own
    spread, :func:`closeness_spreads`) for which one of the image's candidates has a higher
    confidence than that label, and at least ``MIN_BETTER_CONFIDENCE``."""
    text_f, picture_f = stats.member_text, stats.member_picture
    labels = members[:, 1]
    spreads = closeness_spreads(vectors, members, len(stats.text))
    far = np.flatnonzero(np.isfinite(spreads) & (spreads > MISLABEL_SPREADS))
    if not len(far):
        return []
    own = calibration.probability(
        text_f[far] - stats.text_median[labels[far]], picture_f[far] - stats.picture_median[labels[far]]
    )
    images = members[far, 0]
    p = calibration.probability(found.text[images], found.picture[images])
    p[found.labels[images] < 0] = -1.0
    best = p.argmax(axis=1)
    result = []
    for row, pair in enumerate(far):
        better, confidence = int(found.labels[images[row], best[row]]), float(p[row, best[row]])
        if better >= 0 and confidence > max(own[row], MIN_BETTER_CONFIDENCE):
            result.append(
                Mislabel(int(images[row]), int(labels[pair]), better, float(spreads[pair]), confidence)
            )
    return result
