"""IMAGESEARCH_TORCH_DEVICE: a device this machine cannot use is a visible state, not a crash."""

from __future__ import annotations

import pytest

from search import embedding


@pytest.fixture(autouse=True)
def _fresh_model():
    embedding.reset()
    yield
    embedding.reset()


def test_cuda_on_a_machine_without_it_is_refused_with_the_reason(settings):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the device is usable")
    settings.IMAGESEARCH_TORCH_DEVICE = "cuda"

    with pytest.raises(embedding.ModelUnavailable, match="no usable CUDA device"):
        embedding.get_model()
    assert "IMAGESEARCH_TORCH_DEVICE='cuda'" in embedding.last_load_error()


def test_a_name_that_is_no_torch_device_is_refused_with_the_reason(settings):
    settings.IMAGESEARCH_TORCH_DEVICE = "gpu please"

    with pytest.raises(embedding.ModelUnavailable, match="is not a torch device"):
        embedding.get_model()


def test_the_default_cpu_device_loads_and_encodes(settings):
    settings.IMAGESEARCH_TORCH_DEVICE = "cpu"

    assert embedding.encode_texts(["zebra"]).shape == (1, embedding.dimension())
