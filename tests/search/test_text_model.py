"""IMAGESEARCH_TEXT_MODEL: label texts and text queries go through the text model (here the tiny
multilingual encoder of tests/support/text_model.py, loaded through the production path), image
vectors through the CLIP; switching the text model re-derives label vectors and hybrids from
the stored image vectors without running the image model; queries in any script, on the page,
the API and /knn-service, for the multilingual model as for the CLIP's own text tower."""

from __future__ import annotations

import unicodedata
from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.db.models import F
from django.utils import timezone
from sentence_transformers import SentenceTransformer

from gallery.models import Image, Label
from search import encoder, status
from search.ingest import pipeline, rebuild, sweep
from search.query import vectors as query_vectors
from tests.factories import create_images, create_indexed_images
from tests.support.text_model import build_text_model

pytestmark = pytest.mark.django_db

# Labels in several scripts; the accented one is stored decomposed (as macOS spells folder names)
# and searched composed.
SCRIPT_LABELS = ["猫", "自転車", "غروب الشمس", "кошка", "roter Wu\u0308rfel", "👩\u200d💻", "bicicleta"]
TEXT_MODELS = ["clip", "multilingual"]


@pytest.fixture
def use_text_model(settings, text_model_dir):
    """Select the text model by name: "clip" (the CLIP's own text tower) or "multilingual"."""

    def use(which: str) -> str:
        settings.IMAGESEARCH_TEXT_MODEL = str(text_model_dir) if which == "multilingual" else ""
        return encoder.text_model_name()

    return use


def _reference_vectors(model_dir, texts) -> np.ndarray:
    """The texts encoded by sentence-transformers directly, not through the application."""
    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    return encoder.normalize(model.encode(list(texts), convert_to_numpy=True, show_progress_bar=False))


class _CallCounter:
    """Counts calls of the image model: the module's image encoder and the CLIP object itself."""

    def __init__(self, monkeypatch):
        self.calls = 0
        clip = encoder.get_model()
        for owner, name in ((encoder, "encode_images"), (clip, "encode_images"), (clip, "encode_texts")):
            original = getattr(owner, name)
            monkeypatch.setattr(owner, name, self._counting(original))

    def _counting(self, original):
        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        return counted


def test_label_vectors_and_text_queries_come_from_the_text_model(
    use_text_model, text_model_dir, clip_model_dir
):
    text_model = use_text_model("multilingual")
    [image_id] = create_indexed_images([(1, ["sunset", "猫"])])

    labels = list(Label.objects.order_by("name"))
    assert {label.vector_model for label in labels} == {text_model}
    expected = _reference_vectors(text_model_dir, [label.name for label in labels])
    stored = np.stack([encoder.from_bytes(label.vector) for label in labels])
    np.testing.assert_allclose(stored, expected, atol=1e-5)
    clip_text = _reference_vectors(clip_model_dir, [label.name for label in labels])
    assert not np.allclose(stored, clip_text, atol=1e-2)

    query = query_vectors.query_vector_for_text(text="roter Würfel")
    np.testing.assert_allclose(query, _reference_vectors(text_model_dir, ["roter Würfel"])[0], atol=1e-5)

    # The image vector is the CLIP's, recorded with the image model's name.
    image = Image.objects.get(pk=image_id)
    assert image.embedding_model == encoder.model_name() == str(clip_model_dir)
    assert encoder.text_model_name() != encoder.model_name()


def test_switching_the_text_model_rederives_hybrids_without_running_the_image_model(
    use_text_model, monkeypatch, staff_client
):
    use_text_model("clip")
    ids = create_indexed_images([(1, ["sunset"]), (2, ["sunset", "猫"]), (3, ["кошка"]), (4, ["zebra"])])
    image_vectors = dict(Image.objects.filter(pk__in=ids).values_list("pk", "image_vector"))
    old_hybrids = dict(Image.objects.filter(pk__in=ids).values_list("pk", "hybrid_vector"))
    # A pending image has no hybrid yet: it gets one from the text model when it is embedded.
    create_images([(5, ["sunset"])])

    text_model = use_text_model("multilingual")
    counter = _CallCounter(monkeypatch)
    summary = staff_client.get("/api/status").json()
    assert summary["text_model"] == text_model
    assert summary["labels_outdated"] == 4  # sunset, 猫, кошка, zebra
    assert (
        b"Label vectors from another text model"
        in staff_client.get("/admin/search/indexstate/status/").content
    )

    # The status page's *Embed missing* stamps the hybrids and sends them for a refresh.
    response = staff_client.post("/admin/search/indexstate/status/", {"action": "embed_missing"}, follow=True)
    assert "4 hybrid(s) to recompute" in response.content.decode()
    stamped = set(
        Image.objects.ready()
        .filter(labels_changed_at__gt=F("hybrid_updated_at"))
        .values_list("pk", flat=True)
    )
    assert stamped == set(ids)
    # Asked again (a second click, the sweep): nothing is sent twice while the refresh waits.
    assert pipeline.hybrids_text_model_refresh() == 0
    assert sweep.index_sweep()["text_model_refreshed"] == 0

    # What the worker's refresh task runs for the ids it was sent.
    assert pipeline.hybrids_refresh(image_ids=sorted(stamped)) == len(ids)
    rebuild.index_rebuild()

    assert counter.calls == 0
    labels = {label.pk: label for label in Label.objects.all()}
    assert {label.vector_model for label in labels.values()} == {text_model}
    for image in Image.objects.filter(pk__in=ids).prefetch_related("labels"):
        assert image.image_vector == image_vectors[image.pk]  # untouched
        parts = [encoder.from_bytes(labels[label.pk].vector) for label in image.labels.all()]
        expected = encoder.combine(encoder.from_bytes(image.image_vector), parts, 0.5)
        np.testing.assert_allclose(encoder.from_bytes(image.hybrid_vector), expected, atol=1e-6)
        assert image.hybrid_vector != old_hybrids[image.pk]
    assert staff_client.get("/api/status").json()["labels_outdated"] == 0
    assert status.index_status()["behind"] is False

    hits = staff_client.get("/api/search", {"text": "кошка"}).json()["results"]
    assert hits[0]["id"] == ids[2]
    assert counter.calls == 0


def test_a_label_reencoded_for_a_new_upload_refreshes_the_other_images_carrying_it(use_text_model):
    use_text_model("clip")
    [old] = create_indexed_images([(1, ["猫"])])
    text_model = use_text_model("multilingual")
    [new] = create_images([(2, ["猫"])])
    pipeline.images_embed(image_ids=[new])  # re-encodes 猫 with the text model
    assert Label.objects.get(name="猫").vector_model == text_model
    # The older image's hybrid was made from the old vector: it is stamped stale (the sweep would
    # send it again were the refresh lost), and the new one is not.
    assert set(
        Image.objects.ready().hybrids_stale(changed_before=_future()).values_list("pk", flat=True)
    ) == {old}


def _future():
    return timezone.now() + timedelta(seconds=60)


@pytest.fixture
def script_library():
    """Two images per label of SCRIPT_LABELS, indexed with the text model the test selected."""

    def make() -> dict[str, list[int]]:
        specs = [(10 * n + k, [label]) for n, label in enumerate(SCRIPT_LABELS) for k in (1, 2)]
        ids = create_indexed_images(specs)
        return {label: ids[2 * n : 2 * n + 2] for n, label in enumerate(SCRIPT_LABELS)}

    return make


def _page_ids(client, text):
    response = client.get("/", {"q": text})
    assert response.status_code == 200
    return [hit.image.pk for hit in response.context["page"].hits]


def _api_ids(client, text):
    response = client.get("/api/search", {"text": text})
    assert response.status_code == 200, response.content
    return [hit["id"] for hit in response.json()["results"]]


def _knn_ids(client, text):
    response = client.post(
        "/knn-service",
        {"text": text, "num_images": 20, "indice_name": "imagesearch", "deduplicate": False},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return [hit["id"] for hit in response.json()]


SURFACES = {"page": _page_ids, "api": _api_ids, "knn-service": _knn_ids}


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("which", TEXT_MODELS)
def test_the_exact_label_text_in_any_script_ranks_that_labels_images_first(
    use_text_model, script_library, client, which, surface
):
    use_text_model(which)
    library = script_library()
    for label, images in library.items():
        query = unicodedata.normalize("NFC", label)  # typed composed: ü, not u + combining diaeresis
        ranked = SURFACES[surface](client, query)
        assert set(ranked[:2]) == set(images), (label, ranked)


@pytest.mark.parametrize("which", TEXT_MODELS)
def test_a_text_longer_than_the_text_model_reads_is_cut_on_every_surface(
    use_text_model, script_library, client, which
):
    use_text_model(which)
    library = script_library()
    # 1000 characters (the longest query), hundreds of tokens: past 77 (CLIP) and 128 (the
    # multilingual model). Only the ends differ, past what either reads: the same answer.
    first = "猫 " + "犬" * 499 + "鳥" * 498
    second = "猫 " + "犬" * 499 + "魚" * 498
    assert len(first) == 999
    np.testing.assert_array_equal(
        query_vectors.query_vector_for_text(text=first), query_vectors.query_vector_for_text(text=second)
    )
    for ids_of in SURFACES.values():
        assert ids_of(client, first) == ids_of(client, second)
        assert len(ids_of(client, first)) == sum(len(images) for images in library.values())


def test_a_text_model_of_another_dimension_is_refused_naming_both(settings, tmp_path, client, clip_model_dir):
    wrong = build_text_model(tmp_path / "text-32", dim=32, seed=1)
    settings.IMAGESEARCH_TEXT_MODEL = str(wrong)
    with pytest.raises(encoder.ModelUnavailable) as refused:
        encoder.get_text_model()
    message = str(refused.value)
    assert str(wrong) in message and str(clip_model_dir) in message
    assert "32-dimensional" in message and "64-dimensional" in message

    # Nothing crashes: images are marked failed with the reason; word searches answer 503 with a
    # sentence that names no path of this machine, and staff read the reason in the status.
    [image_id] = create_images([(1, ["sunset"])])
    pipeline.images_embed(image_ids=[image_id])
    image = Image.objects.get(pk=image_id)
    assert image.status == Image.Status.FAILED and "32-dimensional" in image.failure_reason
    response = client.get("/api/search", {"text": "sunset"})
    assert response.status_code == 503
    assert "could not be loaded" in response.json()["error"]
    assert str(wrong) not in response.json()["error"]
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    assert "32-dimensional" in client.get("/api/status").json()["model_error"]
    encoder.reset()
