"""A page's explanations computed at once equal each row's parts computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from search.query import explain


def _by_hand(query, row, alpha):
    """(score, picture, labels, picture_weight, labels_weight, shares) of one row, from the formula."""
    image = row.image.astype(np.float64)
    if row.labels is None:
        a, b = (1.0 if alpha is None else alpha), 0.0
    elif alpha is not None:
        a, b = alpha, 1.0 - alpha
    else:
        norm = np.linalg.norm(row.weight * image + (1 - row.weight) * row.labels.astype(np.float64))
        a, b = row.weight / norm, (1 - row.weight) / norm
    labels = row.labels.astype(np.float64) if row.labels is not None else np.zeros_like(image)
    shares = [
        (p.coefficient * a * (p.vector @ image), p.coefficient * b * (p.vector @ labels)) for p in query.parts
    ]
    picture, label_part = sum(s[0] for s in shares), sum(s[1] for s in shares)
    return picture + label_part, picture, label_part, a, b, shares


def _unit(rng, d=16):
    v = rng.normal(size=d)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.mark.parametrize("alpha", [None, 0.0, 0.3, 1.0])
def test_a_page_explained_at_once_equals_each_row_worked_out_by_hand(alpha):
    rng = np.random.default_rng(0)
    rows = [
        explain.RowVectors(_unit(rng), None if i % 4 == 0 else _unit(rng), [0.5, 0.2, 0.8][i % 3])
        for i in range(12)
    ]
    query = explain.QueryVector.combined(
        [explain.QueryPart("image", 0.4, _unit(rng)), explain.QueryPart("words", 0.6, _unit(rng))]
    )
    together = explain.explain_many(query, rows, alpha=alpha)
    for row, got in zip(rows, together, strict=True):
        score, picture, labels, a, b, shares = _by_hand(query, row, alpha)
        assert got.score == got.picture + got.labels
        assert got.score == pytest.approx(score, abs=1e-12)
        assert got.picture == pytest.approx(picture, abs=1e-12)
        assert got.labels == pytest.approx(labels, abs=1e-12)
        assert (got.labels_cosine is None) == (row.labels is None)
        assert got.picture_weight == pytest.approx(a, abs=1e-12)
        assert got.labels_weight == pytest.approx(b, abs=1e-12)
        assert [s.name for s in got.shares] == ["image", "words"]
        for share, (p, lab) in zip(got.shares, shares, strict=True):
            assert share.picture == pytest.approx(p, abs=1e-12) and share.labels == pytest.approx(
                lab, abs=1e-12
            )
        assert explain.explain(query, row, alpha=alpha).score == pytest.approx(got.score, abs=1e-12)
