"""The hybrid formula against a hand computation."""

import numpy as np
import pytest

from search.encoder import combine, normalize


def test_hybrid_is_normalised_average_of_normalised_parts():
    image = np.array([3.0, 4.0, 0.0])  # |image| = 5
    labels = [np.array([0.0, 0.0, 2.0]), np.array([0.0, 2.0, 0.0])]
    # normalised labels (0,0,1), (0,1,0); mean (0,.5,.5); normalised (0,.7071,.7071)
    # normalised image (.6,.8,0); plain average (.3, .75355, .35355); normalise
    expected = np.array([0.3, 0.4 + 0.5 / np.sqrt(2), 0.5 / np.sqrt(2)])
    expected /= np.linalg.norm(expected)
    got = combine(image, labels, 0.5)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.dtype == np.float32
    assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("weight", [0.0, 0.25, 1.0])
def test_hybrid_weight_moves_between_label_and_image(weight):
    image, label = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    got = combine(image, [label], weight)
    expected = normalize(np.array([[weight, 1.0 - weight]]))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_hybrid_without_labels_is_the_image_vector():
    np.testing.assert_allclose(combine(np.array([2.0, 0.0]), [], 0.5), [1.0, 0.0])
