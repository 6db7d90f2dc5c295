"""IMAGESEARCH_TORCH_DEVICE (the torch runtime): a device this machine cannot use is a visible
state, not a crash."""

from __future__ import annotations

import pytest

from search import encoder


@pytest.fixture(autouse=True)
def _fresh_model(settings):
    settings.IMAGESEARCH_ENCODER = "torch"
    encoder.reset()
    yield
    encoder.reset()


def test_cuda_on_a_machine_without_it_is_refused_with_the_reason(settings):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the device is usable")
    settings.IMAGESEARCH_TORCH_DEVICE = "cuda"

    with pytest.raises(encoder.ModelUnavailable, match="no usable CUDA device"):
        encoder.get_model()
    assert "IMAGESEARCH_TORCH_DEVICE='cuda'" in encoder.last_load_error()


def test_a_name_that_is_no_torch_device_is_refused_with_the_reason(settings):
    settings.IMAGESEARCH_TORCH_DEVICE = "gpu please"

    with pytest.raises(encoder.ModelUnavailable, match="is not a torch device"):
        encoder.get_model()


def test_the_default_cpu_device_loads_and_encodes(settings):
    settings.IMAGESEARCH_TORCH_DEVICE = "cpu"

    assert encoder.encode_texts(["zebra"]).shape == (1, encoder.dimension())


def test_the_auto_device_is_the_cpu_where_torch_sees_no_gpu(settings):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: auto picks it")
    settings.IMAGESEARCH_TORCH_DEVICE = "auto"

    encoder.get_model()
    assert encoder.describe()["provider"] == "cpu"
    assert encoder.describe()["runtime"] == "torch"
