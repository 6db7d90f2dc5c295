"""A page's explanations computed at once equal each row explained alone."""

from __future__ import annotations

import numpy as np
import pytest

from search.query import explain


def _unit(rng, d=16):
    v = rng.normal(size=d)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.mark.parametrize("alpha", [None, 0.0, 0.3, 1.0])
def test_a_page_explained_at_once_equals_each_row_explained_alone(alpha):
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
        alone = explain.explain(query, row, alpha=alpha)
        assert got.score == got.picture + got.labels
        assert got.score == pytest.approx(alone.score, abs=1e-12)
        assert got.picture == pytest.approx(alone.picture, abs=1e-12)
        assert (got.labels_cosine is None) == (alone.labels_cosine is None)
        assert got.picture_weight == pytest.approx(alone.picture_weight, abs=1e-12)
        assert got.labels_weight == pytest.approx(alone.labels_weight, abs=1e-12)
        assert [s.name for s in got.shares] == ["image", "words"]
        for a, b in zip(got.shares, alone.shares, strict=True):
            assert a.picture == pytest.approx(b.picture, abs=1e-12) and a.labels == pytest.approx(
                b.labels, abs=1e-12
            )
