"""``POST /knn-service`` speaks clip-retrieval's back-end protocol: proven with clip-retrieval's
own ``ClipClient`` (loaded from the installed package by file path: the package's ``__init__``
imports heavy dependencies this project does not need) against the live server."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import requests

from gallery.models import Image
from search.ingest import pipeline, rebuild
from search.query import clip_retrieval
from tests.factories import create_images
from tests.support.images import image_bytes

# Each test runs against both vector stores (tests/conftest.py, vector_store).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("vector_store")]


def _clip_client_module():
    spec = importlib.util.find_spec("clip_retrieval")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("clip-retrieval is not installed: ./test installs it with `pip install --no-deps`.")
    path = Path(spec.submodule_search_locations[0]) / "clip_client.py"
    module_spec = importlib.util.spec_from_file_location("clip_retrieval_clip_client", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clip_client():
    return _clip_client_module()


def _client(clip_client, live_server, **options):
    options.setdefault("num_images", 3)
    return clip_client.ClipClient(
        url=f"{live_server.url}/knn-service", indice_name=clip_retrieval.INDEX_NAME, **options
    )


def test_clip_client_text_query_gets_ids_captions_urls_and_similarities(
    clip_client, live_server, served_library
):
    results = _client(clip_client, live_server, num_images=2).query(text="zebra")
    assert [set(r) for r in results] == [{"id", "caption", "url", "similarity"}] * 2
    assert {r["id"] for r in results} == set(served_library["zebra"])
    assert {r["caption"] for r in results} == {"zebra"}
    assert results[0]["similarity"] >= results[1]["similarity"]
    image = requests.get(results[0]["url"], timeout=10)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"


def test_clip_client_image_query_finds_the_same_picture_first(
    clip_client, live_server, served_library, tmp_path
):
    picture = tmp_path / "query.png"
    picture.write_bytes(image_bytes(3))  # the bicycle
    results = _client(clip_client, live_server, modality=clip_client.Modality.TEXT).query(image=str(picture))
    assert results[0]["id"] == served_library["bicycle"][0]
    assert len(results) == 3


def test_clip_client_embedding_query(clip_client, live_server, served_library):
    target = Image.objects.get(pk=served_library["sunset"][1])
    vector = np.frombuffer(bytes(target.hybrid_vector), dtype="<f4")
    results = _client(clip_client, live_server).query(embedding_input=(vector * 3).tolist())
    assert results[0]["id"] == target.pk
    assert results[0]["similarity"] == pytest.approx(1.0, abs=1e-4)


def test_clip_client_image_url_of_this_library_searches_with_that_image(
    clip_client, live_server, served_library
):
    first = _client(clip_client, live_server).query(text="bicycle")[0]
    assert first["id"] == served_library["bicycle"][0]
    again = _client(clip_client, live_server).query(image=first["url"])
    assert again[0]["id"] == first["id"]


def test_foreign_image_urls_are_refused_not_fetched(clip_client, live_server, served_library):
    answer = _client(clip_client, live_server).query(image="http://192.0.2.1/cat.jpg")
    assert "other addresses are not fetched" in answer["error"]


def test_deduplicate_drops_near_identical_images(clip_client, live_server, served_library):
    # The same picture as PNG and as JPEG: different files, nearly the same vector.
    png = create_images([(40, ["owl"])])
    jpg = create_images([(40, ["owl"])], fmt="JPEG")
    pipeline.images_embed(image_ids=png + jpg)
    rebuild.index_rebuild()
    both = {r["id"] for r in _client(clip_client, live_server, deduplicate=False).query(text="owl")[:2]}
    assert both == {png[0], jpg[0]}
    deduplicated = [
        r["id"] for r in _client(clip_client, live_server, deduplicate=True, num_images=7).query(text="owl")
    ]
    assert len({png[0], jpg[0]} & set(deduplicated)) == 1
    assert len(deduplicated) == 6


def test_the_front_end_calls_indices_list_and_metadata_across_origins(live_server, served_library):
    listed = requests.get(f"{live_server.url}/indices-list", timeout=10)
    assert listed.json() == [clip_retrieval.INDEX_NAME]
    assert listed.headers["Access-Control-Allow-Origin"] == "*"
    # the front end asks for many ids, then for the metadata of those it shows
    ids = [
        r["id"]
        for r in requests.post(
            f"{live_server.url}/knn-service",
            data=json.dumps(
                {"text": "zebra", "num_images": 1, "num_result_ids": 4, "indice_name": "imagesearch"}
            ),
            timeout=10,
        ).json()
    ]
    assert len(ids) == 4
    meta = requests.post(
        f"{live_server.url}/metadata",
        data=json.dumps({"ids": ids[1:], "indice_name": "imagesearch"}),
        timeout=10,
    ).json()
    assert [m["id"] for m in meta] == ids[1:]
    assert all(m["metadata"]["url"].startswith(live_server.url) for m in meta)


def test_an_unknown_index_name_is_a_400(clip_client, live_server, served_library):
    client = clip_client.ClipClient(url=f"{live_server.url}/knn-service", indice_name="laion5B")
    assert "indice_name: Input should be 'imagesearch'" in client.query(text="zebra")["error"]


def test_an_embedding_of_another_dimension_is_a_400_naming_the_index_dimension(client, served_library):
    response = client.post("/knn-service", {"embedding_input": [0.5] * 5}, content_type="application/json")
    assert response.status_code == 400
    assert "embedding_input has 5 numbers; this index holds vectors of 64." in response.json()["error"]
