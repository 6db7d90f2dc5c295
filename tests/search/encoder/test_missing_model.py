"""A configured model that is neither on this machine nor downloadable is refused at once, in
words, by the process that asked: no export child is started (it would import torch, seconds of
start-up, only to say the same)."""

from __future__ import annotations

import subprocess

import pytest

from search import encoder
from search.encoder import cache


@pytest.fixture
def no_export_child(monkeypatch) -> list[list[str]]:
    """The export children started (none run: each answers as a failed export would)."""
    started: list[list[str]] = []

    def run(command, **kwargs):
        started.append(command)
        return subprocess.CompletedProcess(command, 1, "", f"{cache.REASON_PREFIX}the child ran")

    monkeypatch.setattr(cache.subprocess, "run", run)
    return started


def test_a_model_neither_here_nor_reachable_is_refused_without_an_export_child(
    settings, tmp_path, monkeypatch, no_export_child
):
    settings.IMAGESEARCH_ENCODER = "onnx"  # the runtime whose models an export child makes
    settings.IMAGESEARCH_CLIP_MODEL = str(tmp_path / "no-such-model")
    monkeypatch.setattr(cache, "hub_reachable", lambda: False)
    encoder.reset()
    try:
        with pytest.raises(encoder.ModelUnavailable) as refused:
            encoder.get_model()
    finally:
        encoder.reset()
    reason = str(refused.value)
    assert "no-such-model" in reason and "IMAGESEARCH_CLIP_MODEL" in reason
    assert "hub cannot be reached" in reason
    assert no_export_child == []


def test_a_model_not_here_but_on_a_reachable_hub_is_left_to_the_export_child(
    settings, tmp_path, monkeypatch, no_export_child
):
    settings.IMAGESEARCH_ENCODER = "onnx"
    settings.IMAGESEARCH_CLIP_MODEL = "someone/a-model-on-the-hub"
    monkeypatch.setattr(cache, "hub_reachable", lambda: True)
    encoder.reset()
    try:
        with pytest.raises(encoder.ModelUnavailable, match="the child ran"):
            encoder.get_model()
    finally:
        encoder.reset()
    assert len(no_export_child) == 1 and "someone/a-model-on-the-hub" in no_export_child[0]
