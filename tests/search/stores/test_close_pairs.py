"""search.stores.faiss.close_pairs: every pair within the threshold among the k nearest, once, equal to a
brute-force answer, with progress after every batch."""

from __future__ import annotations

import numpy as np

from search.stores.faiss import close_pairs


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _vectors() -> np.ndarray:
    rng = np.random.default_rng(7)
    base = _unit(rng.standard_normal((300, 32)))
    # 60 near copies of the first 60 rows, a few of them twice.
    copies = _unit(base[:60] + 0.05 * rng.standard_normal((60, 32)))
    again = _unit(base[:10] + 0.05 * rng.standard_normal((10, 32)))
    return np.concatenate([base, copies, again])


def test_the_pairs_are_those_of_a_brute_force_search_each_once():
    vectors = _vectors()
    first, second, score = close_pairs(vectors, k=8, threshold=0.9, batch=64)
    cosines = vectors @ vectors.T
    i, j = np.nonzero(np.triu(cosines >= 0.9, 1))
    assert sorted(zip(first.tolist(), second.tolist(), strict=True)) == sorted(
        zip(i.tolist(), j.tolist(), strict=True)
    )
    assert (first < second).all()
    assert np.allclose(score, cosines[first, second], atol=1e-5)
    assert len(first) >= 60 + 10  # at least every copy with its original


def test_progress_is_reported_after_every_batch():
    seen: list[tuple[int, int]] = []
    close_pairs(
        _vectors(), k=4, threshold=0.9, batch=100, on_batch=lambda done, total: seen.append((done, total))
    )
    assert seen == [(100, 370), (200, 370), (300, 370), (370, 370)]


def test_fewer_than_two_vectors_have_no_pairs():
    first, _, _ = close_pairs(np.ones((1, 8), np.float32) / np.sqrt(8), k=4, threshold=0.5)
    assert len(first) == 0


def test_the_approximate_search_finds_every_near_copy_with_its_original():
    rng = np.random.default_rng(3)
    originals = _unit(rng.standard_normal((6000, 48)))
    copies = _unit(originals[:600] + 0.02 * rng.standard_normal((600, 48)))  # cosine ~0.99
    vectors = np.concatenate([originals, copies])
    first, second, _ = close_pairs(vectors, k=8, threshold=0.95, approximate=True)
    found = set(zip(first.tolist(), second.tolist(), strict=True))
    assert {(i, 6000 + i) for i in range(600)} <= found
    exact_first, exact_second, _ = close_pairs(vectors, k=8, threshold=0.95, approximate=False)
    assert found <= set(zip(exact_first.tolist(), exact_second.tolist(), strict=True))
