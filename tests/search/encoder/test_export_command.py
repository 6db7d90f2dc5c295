"""``manage.py export_encoder``: the configured models exported ahead of time, once, beside their
files; a model whose files change is exported again; a model that cannot be exported is an
error in words."""

from __future__ import annotations

import shutil
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from search import encoder
from search.encoder import cache


def _run(*args: str) -> str:
    out = StringIO()
    call_command("export_encoder", *args, stdout=out)
    return out.getvalue()


def test_the_command_exports_both_models_beside_their_files_and_the_runtime_serves_them(
    settings, tmp_path, clip_model_dir, text_model_dir
):
    clip, text = (
        shutil.copytree(clip_model_dir, tmp_path / "clip"),
        shutil.copytree(text_model_dir, tmp_path / "text"),
    )
    shutil.rmtree(clip / cache.CACHE_DIR_NAME)
    shutil.rmtree(text / cache.CACHE_DIR_NAME)
    settings.IMAGESEARCH_CLIP_MODEL, settings.IMAGESEARCH_TEXT_MODEL = str(clip), str(text)

    printed = _run("--int8")

    clip_export = cache.find_export(str(clip), encoder.export_root())
    text_export = cache.find_export(str(text), encoder.export_root())
    assert clip_export is not None and clip_export.parent == clip / cache.CACHE_DIR_NAME
    assert text_export is not None and text_export.parent == text / cache.CACHE_DIR_NAME
    assert f"IMAGESEARCH_CLIP_MODEL={clip}: text, image -> {clip_export}" in printed
    assert f"IMAGESEARCH_TEXT_MODEL={text}: text -> {text_export}" in printed
    assert {p.name for p in clip_export.glob("*.onnx")} == {
        "text.onnx",
        "image.onnx",
        "text.int8.onnx",
        "image.int8.onnx",
    }
    assert _run() == printed  # a second run finds the exports and changes nothing
    assert cache.find_export(str(clip), encoder.export_root()) == clip_export
    encoder.reset()
    assert encoder.encode_texts(["zebra"]).shape == (1, 64)
    encoder.reset()


def test_a_changed_model_is_exported_again_under_a_new_key(settings, tmp_path, clip_model_dir):
    clip = shutil.copytree(clip_model_dir, tmp_path / "clip")
    shutil.rmtree(clip / cache.CACHE_DIR_NAME)
    settings.IMAGESEARCH_CLIP_MODEL = str(clip)

    _run()
    first = cache.find_export(str(clip), encoder.export_root())
    config = clip / "0_CLIPModel" / "config.json"
    config.write_text(config.read_text() + "\n")  # the model changed
    assert cache.find_export(str(clip), encoder.export_root()) is None

    _run()
    second = cache.find_export(str(clip), encoder.export_root())
    assert second is not None and second != first


def test_a_model_that_cannot_be_loaded_is_an_error_in_words(settings, tmp_path):
    settings.IMAGESEARCH_CLIP_MODEL = str(tmp_path / "not-a-model")
    (tmp_path / "not-a-model").mkdir()

    with pytest.raises(CommandError, match="not-a-model"):
        _run()
