"""The precision curve and its thresholds (search.calibration.precision), on synthetic libraries
whose right answers are known: the threshold estimated for a level, applied to fresh queries of
the same library, keeps results whose measured precision is within 0.1 of that level."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search.calibration import precision


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _library(seed: int, *, d: int = 64, groups: int = 100, per_group: int = 4, images: int = 20):
    """Labels in groups of near neighbours (how tight varies by group, so precision varies with
    the score); each image one label, its hybrid mostly picture and partly its label's text.
    Returns hybrids, image vectors, (image, label) pairs and the labels' text vectors."""
    rng = np.random.default_rng(seed)
    group = _unit(rng.normal(size=(groups, d)))
    spread = np.repeat(rng.uniform(0.4, 1.0, size=groups), per_group)[:, None]
    centres = _unit(np.repeat(group, per_group, 0) + spread * _unit(rng.normal(size=(groups * per_group, d))))
    text = _unit(centres + 0.5 * _unit(rng.normal(size=centres.shape)))
    label = np.repeat(np.arange(len(centres)), images)
    picture = _unit(centres[label] + 1.1 * _unit(rng.normal(size=(len(label), d))))
    hybrids = _unit(0.75 * picture + 0.25 * text[label])
    members = np.stack([np.arange(len(label)), label], axis=1)
    return hybrids, picture, members, text


def _measured_precision(kind: str, threshold: float, hybrids, picture, members, text) -> float:
    """Pooled precision of every result at or above ``threshold``, by brute force: each label's
    text (``text``) or each of its images (``image``, the image itself left out) as a query."""
    right = np.zeros((len(text), len(hybrids)), dtype=bool)
    right[members[:, 1], members[:, 0]] = True
    labels = np.unique(members[:, 1])
    if kind == "text":
        scores, is_right = text[labels] @ hybrids.T, right[labels]
        counted = np.ones_like(is_right)
    else:
        queries = members[:, 0]
        scores, is_right = picture[queries] @ hybrids.T, right[members[:, 1]]
        counted = np.ones_like(is_right)
        counted[np.arange(len(queries)), queries] = False
    shown = counted & (scores >= threshold)
    return float(is_right[shown].sum() / shown.sum())


# Two libraries drawn at random. With 200 labels calibrating, the measured precision of fresh
# queries strays from the level by a few hundredths (more on a library of few labels, where the
# estimate rests on few queries).
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", precision.KINDS)
def test_precision_measured_on_fresh_queries_is_within_a_tenth_of_the_level(seed, kind):
    hybrids, picture, members, text = _library(seed)
    # Half the labels calibrate; the other half are the fresh queries, against the same library
    # (their images are there during calibration, as wrong answers of the other labels).
    rng = np.random.default_rng(seed)
    fresh = np.zeros(len(text), dtype=bool)
    fresh[rng.choice(len(text), len(text) // 2, replace=False)] = True
    estimate = precision.label_queries(hybrids, picture, members[~fresh[members[:, 1]]], text)
    assert estimate.labels == precision.MAX_LABELS and not estimate.note
    curve = estimate.curves[kind]
    for level in (0.7, 0.8):
        threshold = curve.threshold(level)
        assert threshold is not None
        measured = _measured_precision(kind, threshold, hybrids, picture, members[fresh[members[:, 1]]], text)
        assert abs(measured - level) <= 0.1, (level, threshold, measured)
        # Precision really varies with the score here: the cut-off is not trivially at the top.
        assert curve.precision.min() < 0.5


def test_the_curve_is_small_and_answers_every_level_as_the_full_counts_do():
    hybrids, picture, members, text = _library(5)
    curve = precision.label_queries(hybrids, picture, members, text).curves["image"]
    assert len(curve.scores) <= 100
    assert np.all(np.diff(curve.scores) < 0)  # highest first
    stored = precision.Curve.from_json(curve.to_json())
    for level in np.round(np.arange(0.5, 0.99, 0.01), 2):
        assert stored.threshold(level) == curve.threshold(level)


def test_a_threshold_is_not_set_by_the_noisy_top_of_the_curve():
    # The first two results are wrong (precision 0 at the very top), the next hundred right,
    # then only wrong ones: the 0.8 threshold still keeps the hundred.
    scores = np.concatenate([[0.95, 0.94], np.linspace(0.9, 0.6, 100), np.linspace(0.5, 0.0, 400)])
    right = np.concatenate([[False, False], np.ones(100, bool), np.zeros(400, bool)])
    curve = precision.pooled([(scores, right)])
    threshold = curve.threshold(0.8)
    assert threshold is not None and 0.45 < threshold <= 0.6
    kept = scores >= threshold
    assert right[kept].mean() >= 0.8
    assert precision.pooled([(scores[:10], right[:10])]).threshold(0.8) is None  # under MIN_SUPPORT


def test_the_query_image_is_never_counted_as_its_own_right_answer():
    # Images alike only to themselves: without the query image, nothing is found above chance.
    rng = np.random.default_rng(0)
    picture = _unit(rng.normal(size=(400, 256)))
    members = np.stack([np.arange(400), np.arange(400) % 20], axis=1)
    text = _unit(rng.normal(size=(20, 256)))
    estimate = precision.label_queries(picture, picture, members, text)
    assert estimate.curves["image"].threshold(0.5) is None
    assert estimate.curves["image"].scores.max() < 0.5  # a self-match would score 1.0


def test_too_few_labels_with_enough_images_gives_no_curves_and_says_why():
    hybrids, picture, members, text = _library(1, groups=1, per_group=4, images=6)
    few = members[(members[:, 1] < 2) | (members[:, 0] % 6 < 4)]  # two labels of 6, two of 4
    estimate = precision.label_queries(hybrids, picture, few, text)
    assert estimate.curves == {} and estimate.eligible == 2
    assert estimate.note == (
        "Too few labelled images to calibrate: 2 label(s) have at least 5 images; at least 3 are needed."
    )


def test_the_same_library_gives_the_same_curves():
    library = _library(7, groups=60)
    first = precision.label_queries(*library)
    second = precision.label_queries(*library)
    for kind in precision.KINDS:
        assert first.curves[kind].to_json() == second.curves[kind].to_json()


def test_the_arithmetic_imports_without_django():
    code = (
        "import sys, search.calibration.precision;"
        " print(sorted(m for m in sys.modules if m.startswith('django')))"
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_threshold_sits_at_the_lowest_result_it_keeps_not_in_the_gap_below():
    # Thirty right answers from 0.9 down to 0.8, then nothing until five wrong ones at 0.2:
    # every score in the gap keeps the same thirty, and the threshold is the lowest of them.
    scores = np.concatenate([np.linspace(0.9, 0.8, 30), np.full(5, 0.2)])
    right = np.concatenate([np.ones(30, bool), np.zeros(5, bool)])
    threshold = precision.pooled([(scores, right)]).threshold(0.9)
    assert 0.8 - 2 / precision.BINS <= threshold <= 0.8
