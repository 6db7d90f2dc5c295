"""IMAGESEARCH_INDEX_KIND: rebuilds write the configured kind; search answers from any kind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gallery.models import Image
from search import status
from search.ingest import pipeline, rebuild
from search.query import ranking
from search.query import vectors as query_vectors
from search.stores import faiss as search_index
from search.stores import faiss_store
from tests.factories import create_images

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_rebuild_writes_the_configured_kind_and_search_answers_from_it(settings, kind):
    settings.IMAGESEARCH_INDEX_KIND = kind
    ids = create_images([(1, ["sunset"]), (2, ["bicycle"]), (3, ["zebra"]), (4, ["zebra"])])
    pipeline.images_embed(image_ids=ids)

    report = rebuild.index_rebuild()

    manifest = search_index.read_current_manifest(faiss_store.index_dir())
    assert report.built and manifest.kind == kind and manifest.count == 4
    page = ranking.images_search(vector=query_vectors.query_vector_for_text(text="zebra"))
    zebras = set(Image.objects.filter(labels__name="zebra").values_list("pk", flat=True))
    assert {hit.image.pk for hit in page.hits[:2]} == zebras
    assert not status.index_behind()


@pytest.mark.django_db
def test_changing_the_kind_setting_marks_the_index_behind_until_rebuilt(settings):
    pipeline.images_embed(image_ids=create_images([(1, ["sunset"]), (2, ["zebra"])]))
    rebuild.index_rebuild()
    assert not status.index_behind()

    settings.IMAGESEARCH_INDEX_KIND = "ivf"
    assert status.index_behind()

    rebuild.index_rebuild()
    assert not status.index_behind()
    assert search_index.read_current_manifest(faiss_store.index_dir()).kind == "ivf"


def test_an_unknown_index_kind_is_refused_at_start_with_the_choices():
    env = {**os.environ, "IMAGESEARCH_INDEX_KIND": "annoy", "DJANGO_SECRET_KEY": "x" * 50}
    result = subprocess.run(
        [sys.executable, "-c", "import imagesearch.settings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "IMAGESEARCH_INDEX_KIND must be auto, flat or ivf" in result.stderr
