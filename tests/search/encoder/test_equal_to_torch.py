"""The ONNX runtime gives torch's results: the same token ids and pixels as sentence-transformers
makes, vectors within cosine 0.9999 of torch's one by one, and the same top 10 through the whole
application (embedding, index, ranking) on each vector store, for the tests' tiny CLIP and its
tiny multilingual text model, both exported the way the product exports a model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage
from sentence_transformers import SentenceTransformer

from gallery.models import Image, Label
from search import encoder
from search.encoder import cache
from search.encoder.onnx_runtime import OnnxEncoder
from search.encoder.preprocessing import TextTokenizer
from search.ingest import actions, pipeline, rebuild
from search.query import ranking
from search.query import vectors as query_vectors
from tests.factories import create_images

MIN_COSINE = 0.9999
TEXTS = [
    "a cat",
    "",
    "café au lait",
    "Ünïcödé 東京タワー 🎉 ✈",
    "word " * 200,  # longer than either model reads: truncated the same way
    "ΑΒΓ привет שלום مرحبا",
    "  spaces   and\ttabs\n",
    "UPPER lower MiXeD",
    "don't stop—now!",
]
QUERIES = ["zebra", "sunset", "bicycle", "a red car", "beach at night", "kitten", "mountain lake", "Zürich"]


def _images() -> list[PILImage.Image]:
    rng = np.random.default_rng(0)
    sizes = [(32, 32), (50, 90), (200, 31), (7, 5), (1, 64), (300, 200)]
    images = [PILImage.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    images.append(PILImage.fromarray(rng.integers(0, 255, (40, 40, 4), dtype=np.uint8), "RGBA"))
    images += [images[1].convert("L"), images[1].convert("P"), images[1].convert("CMYK")]
    return images


def _export(path) -> OnnxEncoder:
    from django.conf import settings

    directory = cache.find_export(str(path), settings.DATA_DIR / "onnx-runtime")
    assert directory is not None, "the session fixtures export both tiny models"
    return OnnxEncoder(directory, threads=1)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(params=["clip", "multilingual"])
def model_dir(request, clip_model_dir, text_model_dir):
    return clip_model_dir if request.param == "clip" else text_model_dir


def test_the_tokenizer_gives_sentence_transformers_ids_and_mask(model_dir):
    reference = SentenceTransformer(str(model_dir), device="cpu").preprocess(TEXTS)
    ours = TextTokenizer(_export(model_dir).directory / "tokenizer.json")(TEXTS)
    for key in ("input_ids", "attention_mask"):
        assert ours[key].tolist() == reference[key].tolist()


def test_the_image_preprocessing_gives_sentence_transformers_pixels(clip_model_dir):
    reference = SentenceTransformer(str(clip_model_dir), device="cpu")
    onnx = _export(clip_model_dir)
    for image in _images():
        expected = reference.preprocess([image])["pixel_values"].numpy()
        assert onnx._pixels is not None
        ours = onnx._pixels.pixels([image])
        assert ours.shape == expected.shape, image.mode
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6, err_msg=f"{image.mode} {image.size}")


def test_text_vectors_are_torchs_one_by_one(model_dir):
    reference = SentenceTransformer(str(model_dir), device="cpu")
    expected = reference.encode(TEXTS, batch_size=4, convert_to_numpy=True)
    got = _export(model_dir).encode_texts(TEXTS, batch_size=4)
    assert _cosines(got, expected).min() >= MIN_COSINE


def test_image_vectors_are_torchs_one_by_one(clip_model_dir):
    reference = SentenceTransformer(str(clip_model_dir), device="cpu")
    expected = reference.encode(_images(), batch_size=3, convert_to_numpy=True)
    got = _export(clip_model_dir).encode_images(_images(), batch_size=3)
    assert _cosines(got, expected).min() >= MIN_COSINE


def _library_under(
    runtime: str, ids: list[int], settings
) -> tuple[dict[str, list[int]], dict[int, np.ndarray]]:
    """Embed and index the library with ``runtime``, then its top 10 for each query and its
    stored hybrids."""
    settings.IMAGESEARCH_ENCODER = runtime
    encoder.reset()
    Label.objects.update(vector=None, vector_model="")
    actions.images_reembed(image_ids=ids)
    pipeline.images_embed(image_ids=ids)
    rebuild.index_rebuild()
    assert Image.objects.filter(pk__in=ids, status=Image.Status.READY).count() == len(ids)
    top = {
        text: [
            hit.image.pk
            for hit in ranking.images_search(
                vector=query_vectors.query_vector_for_text(text=text), page_size=10
            ).hits
        ]
        for text in QUERIES
    }
    hybrids = {
        pk: encoder.from_bytes(blob)
        for pk, blob in Image.objects.filter(pk__in=ids).values_list("pk", "hybrid_vector")
    }
    return top, hybrids


@pytest.mark.django_db
@pytest.mark.usefixtures("vector_store")
@pytest.mark.parametrize("text_model", ["clip", "multilingual"])
def test_the_application_gives_the_same_top_10_with_either_runtime(settings, text_model, text_model_dir):
    if text_model == "multilingual":
        settings.IMAGESEARCH_TEXT_MODEL = str(text_model_dir)
    labels = ["zebra", "sunset", "bicycle", "beach", "kitten", "lake", "car", "night"]
    ids = create_images([(seed, [labels[seed % 8], labels[(seed * 3) % 8]]) for seed in range(1, 41)])

    torch_top, torch_hybrids = _library_under("torch", ids, settings)
    onnx_top, onnx_hybrids = _library_under("onnx", ids, settings)

    assert onnx_top == torch_top
    assert all(len(top) == 10 for top in onnx_top.values())
    stacked = np.stack([onnx_hybrids[pk] for pk in ids]), np.stack([torch_hybrids[pk] for pk in ids])
    assert _cosines(*stacked).min() >= MIN_COSINE
    assert encoder.describe()["runtime"] == "onnx"
    assert encoder.describe()["provider"] == "CPUExecutionProvider"
