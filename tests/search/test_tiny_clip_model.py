"""The seeded random-weight CLIP model the test suite runs on (tests/support/clip_model.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.clip_model import (
    FORMAT_VERSION,
    MARKER_FILE,
    MAX_TEXT_TOKENS,
    MODULE_DIR,
    build_clip_model,
    embedding_dim,
    main,
)

ROOT = Path(__file__).resolve().parents[2]
DIM = 64

TEXTS = ["a photo of a cat", "sunset over the mountains", "a photo of a cat"]
ODD_TEXTS = [
    "",
    "   \t\n  ",
    "😀🐈‍⬛ emoji 👍🏽 and 🇫🇷 flags",
    "שלום עולם مرحبا بالعالم",
    "control \x00\x01\x07\x1b[31m\x7f\u200b\u202e characters",
    "中文 日本語 한국어 Ünïcödé ß ﬁ \U0010ffff",
    "<|endoftext|> looks like a special token <|startoftext|>",
]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.new("RGB", (50, 40)),
        Image.new("RGB", (40, 50), "red"),
        Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)),
        Image.new("L", (30, 30), 128),  # Greyscale: the processor converts to RGB.
    ]


def _load(path: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def _file_bytes(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return build_clip_model(tmp_path_factory.mktemp("clip") / "tiny", size="tiny", seed=0)


@pytest.fixture(scope="module")
def model(built):
    return _load(built)


def test_layout_is_the_sentence_transformers_clip_layout(built):
    modules = json.loads((built / "modules.json").read_text())
    assert modules == [
        {"idx": 0, "name": "0", "path": MODULE_DIR, "type": "sentence_transformers.models.CLIPModel"}
    ]
    module_files = {f.name for f in (built / MODULE_DIR).iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "vocab.json",
        "merges.txt",
        "tokenizer_config.json",
    } <= module_files
    assert (built / MODULE_DIR / "merges.txt").read_text().startswith("#version: 0.2\n")
    marker = json.loads((built / MARKER_FILE).read_text())
    assert marker == {"format_version": FORMAT_VERSION, "size": "tiny", "seed": 0}
    assert embedding_dim("tiny") == DIM
    assert embedding_dim("full") == 512


def test_text_and_image_vectors_have_the_projection_dim(model):
    texts = model.encode(TEXTS)
    images = model.encode(_images())
    assert texts.shape == (3, DIM)
    assert images.shape == (4, DIM)
    for vectors in (texts, images):
        assert vectors.dtype == np.float32
        assert np.isfinite(vectors).all()
    # Different inputs give different vectors (the text tower pools at the real EOS token),
    # the same input the same vector.
    assert not np.allclose(texts[0], texts[1])
    assert np.array_equal(texts[0], texts[2])
    assert not np.allclose(images[0], images[1])


def test_odd_text_encodes(model):
    vectors = model.encode(ODD_TEXTS)
    assert vectors.shape == (len(ODD_TEXTS), DIM)
    assert np.isfinite(vectors).all()
    tokenizer = model[0].tokenizer
    for text in ODD_TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert all(0 <= i < len(tokenizer) for i in ids), text


def test_long_text_is_truncated_not_rejected(model):
    long_text = "a very long caption about a cat on a beach at sunset " * 2000  # ~100 kB
    vectors = model.encode([long_text, "short"])
    assert vectors.shape == (2, DIM)
    assert np.isfinite(vectors).all()
    features = model[0].preprocess([long_text])
    assert features["input_ids"].shape[-1] == MAX_TEXT_TOKENS
    assert features["input_ids"][0, -1].item() == model[0].tokenizer.eos_token_id


def test_same_seed_gives_identical_files_and_vectors(built, model, tmp_path):
    again = build_clip_model(tmp_path / "again", size="tiny", seed=0)
    assert _file_bytes(again) == _file_bytes(built)
    other = _load(again)
    for inputs in (TEXTS, _images()):
        assert model.encode(inputs).tobytes() == other.encode(inputs).tobytes()


def test_other_seed_gives_other_weights(model, tmp_path):
    other = _load(build_clip_model(tmp_path / "seed1", size="tiny", seed=1))
    assert not np.allclose(model.encode(TEXTS), other.encode(TEXTS))


@pytest.mark.slow
def test_build_in_another_process_is_byte_identical(built, tmp_path):
    target = tmp_path / "cli"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.clip_model", str(target), "--size", "tiny", "--seed", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(target)
    assert _file_bytes(target) == _file_bytes(built)


def test_rebuild_is_skipped_when_the_marker_matches(tmp_path, capsys):
    path = tmp_path / "cached"
    assert main([str(path), "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    weights = path / MODULE_DIR / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_clip_model(path, size="tiny", seed=3) == path
    assert weights.stat().st_mtime_ns == before

    # A different seed replaces the stale build.
    build_clip_model(path, size="tiny", seed=4)
    assert json.loads((path / MARKER_FILE).read_text())["seed"] == 4
    assert not list(tmp_path.glob(".cached.*")), "temporary directories are cleaned up"


def test_builds_into_an_existing_empty_directory(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    assert (build_clip_model(path) / "modules.json").is_file()


def test_refuses_to_overwrite_a_foreign_directory(tmp_path):
    path = tmp_path / "foreign"
    path.mkdir()
    (path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        build_clip_model(path)
    assert (path / "precious.txt").read_text() == "keep me"
    assert not list(tmp_path.glob(".foreign.*"))


def test_rejects_unknown_size(tmp_path):
    with pytest.raises(ValueError, match="size"):
        build_clip_model(tmp_path / "x", size="huge")


def test_concurrent_builders_agree(built, tmp_path):
    import torch

    rng_state = torch.get_rng_state()
    path = tmp_path / "shared"
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: build_clip_model(path, size="tiny", seed=0), range(3)))
    assert results == [path] * 3
    assert _file_bytes(path) == _file_bytes(built)
    assert [p.name for p in tmp_path.iterdir()] == ["shared"], "no temporary directories are left"
    assert torch.equal(torch.get_rng_state(), rng_state), "the caller's torch RNG state is untouched"
