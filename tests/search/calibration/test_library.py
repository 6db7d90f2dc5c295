"""The worker's calibration on the library's own rows (search.calibration.library), run by the
rebuild task as the worker runs it, on both stores: a library with enough labelled images gets
thresholds that searches can read (search.calibration.cutoffs.cutoff), and results of real searches at
or above them are the labels' images; too few labelled images give the sentence and no
thresholds; a failure is recorded and leaves the rebuild standing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.db.models import F

from gallery.services import images_create
from search import dispatch, tasks
from search.calibration import cutoffs, library, precision
from search.ingest import pipeline
from search.models import Calibration, IndexState
from search.query import ranking
from search.query import vectors as query_vectors
from search.stores import faiss as search_index
from tests.factories import upload
from tests.support.images import make_image
from tests.support.near_duplicates import SEEDS

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_store")]

SIZE = (192, 144)
VARIANTS = 6
TOO_FEW = "Too few labelled images to calibrate: 2 label(s) have at least 5 images; at least 3 are needed."


def _variants(name: str, count: int) -> list[bytes]:
    """Pictures of one subject as a library holds them: re-encoded and cropped in as many ways
    (the tiny random model sees them as alike, and other subjects as apart)."""
    original = make_image(SEEDS[name], SIZE)
    w, h = SIZE
    found = []
    for n in range(count):
        out = io.BytesIO()
        original.crop((n, n % 3, w - n, h - (n % 4))).save(out, "JPEG", quality=60 + 5 * n)
        found.append(out.getvalue())
    return found


def _library(counts: dict[str, int]) -> dict[str, list[int]]:
    """Images of each subject, labelled with its name, embedded (which asks for a rebuild)."""
    stored = {}
    for name, count in counts.items():
        result = images_create(
            uploads=[upload(data, [name], f"{name}-{n}.jpg") for n, data in enumerate(_variants(name, count))]
        )
        assert not result.refused and not result.duplicates
        stored[name] = result.added
    pipeline.images_embed(image_ids=[pk for ids in stored.values() for pk in ids])
    return stored


def _rebuild_task() -> dict[str, object]:
    report = tasks.rebuild_index()  # as the worker runs it: the rebuild, then the calibration
    search_index.reset_readers()
    return report


def test_a_rebuild_that_served_requests_stores_thresholds_that_real_searches_honour():
    stored = _library({name: VARIANTS for name in SEEDS})
    assert _rebuild_task()["served"]
    row = Calibration.get()
    assert (row.library, row.sample, row.labels, row.eligible_labels) == (24, 24, 4, 4)
    assert (row.text_queries, row.image_queries) == (4, 4 * precision.IMAGE_QUERIES_PER_LABEL)
    assert row.calibrated_at is not None and not row.note and not row.last_error
    found = cutoffs.cutoff("text", 0.8)
    assert found.threshold is not None and not found.reason
    # What a search at that cut-off keeps: its score is the cosine with the hybrid, as the
    # calibration's, so the labels' own words keep (mostly) their own images.
    kept = right = 0
    for name, ids in stored.items():
        vector = query_vectors.query_vector_for_text(text=name)
        for hit in ranking.images_search(vector=vector, page_size=24).hits:
            if hit.score >= found.threshold:
                kept += 1
                right += hit.image.pk in ids
    assert kept >= 4 and right / kept >= 0.7
    assert cutoffs.cutoff("image", 0.8).threshold is not None


def test_too_few_labelled_images_say_so_and_give_no_thresholds(staff_client):
    _library({"kestrel": VARIANTS, "harbour": VARIANTS, "orchard": 3})
    _rebuild_task()
    row = Calibration.get()
    assert row.note == TOO_FEW and row.curves == {} and row.eligible_labels == 2
    for kind in cutoffs.KINDS:
        assert cutoffs.cutoff(kind, 0.8) == cutoffs.Cutoff(kind, 0.8, None, TOO_FEW)
    assert TOO_FEW in staff_client.get("/admin/search/indexstate/status/").content.decode()
    assert staff_client.get("/api/status").json()["calibration"]["note"] == TOO_FEW

    # Three more images of the third subject: the next rebuild calibrates, and searches read it.
    more = images_create(
        uploads=[upload(d, ["orchard"], f"more-{n}.jpg") for n, d in enumerate(_more("orchard"))]
    )
    pipeline.images_embed(image_ids=more.added)
    _rebuild_task()
    assert cutoffs.cutoff("text", 0.8).threshold is not None


def _more(name: str) -> list[bytes]:
    original = make_image(SEEDS[name], SIZE)
    out = []
    for quality in (40, 45, 50):
        data = io.BytesIO()
        original.resize((180, 135)).save(data, "JPEG", quality=quality)
        out.append(data.getvalue())
    return out


def test_the_status_page_and_the_api_show_the_calibration(staff_client):
    _library({name: VARIANTS for name in SEEDS})
    _rebuild_task()
    threshold = cutoffs.cutoff("text", 0.8).threshold
    status = staff_client.get("/api/status").json()["calibration"]
    assert (status["labels"], status["sample"], status["current"], status["note"]) == (4, 24, True, "")
    shown = {(t["kind"], t["level"]): t["threshold"] for t in status["thresholds"]}
    assert set(shown) == {(kind, level) for kind in ("text", "image") for level in (0.8, 0.9)}
    assert shown[("text", 0.8)] == threshold
    assert status["summary"].startswith(
        "From 4 labels of a sample of 24 images (4 word and 12 image queries)."
    )
    assert f"precision 0.8 from score {threshold:.3f}" in status["summary"]
    assert staff_client.get("/admin/search/indexstate/status.json").json()["calibration"] == status
    html = staff_client.get("/admin/search/indexstate/status/").content.decode()
    assert status["summary"] in html.replace("&#x27;", "'")
    assert status["calibrated_at"][:10] in html and 'id="calibration-error-row" hidden' in html


def test_a_calibration_made_by_another_model_gives_no_threshold(settings):
    _library({name: VARIANTS for name in SEEDS})
    _rebuild_task()
    made = settings.IMAGESEARCH_CLIP_MODEL
    settings.IMAGESEARCH_CLIP_MODEL = "another-model"
    found = cutoffs.cutoff("image", 0.8)
    assert found.threshold is None and made in found.reason and "another model" in found.reason
    assert cutoffs.calibration_summary()["current"] is False


def test_before_the_first_calibration_a_cutoff_says_so_and_bad_arguments_are_refused():
    assert cutoffs.cutoff("text", 0.8).reason == cutoffs.NOT_YET
    assert cutoffs.calibration_summary()["summary"] == cutoffs.NOT_YET
    with pytest.raises(ValueError, match="from 0.5 to 0.99"):
        cutoffs.cutoff("text", 0.3)
    with pytest.raises(ValueError, match="kind must be one of text, image"):
        cutoffs.cutoff("words", 0.8)


def test_a_failed_calibration_is_recorded_and_the_rebuild_stands(monkeypatch, staff_client):
    _library({name: VARIANTS for name in SEEDS})
    _rebuild_task()
    kept = cutoffs.cutoff("text", 0.8).threshold

    def broken(*args, **kwargs):
        raise MemoryError("no room for the scores")

    monkeypatch.setattr(precision, "label_queries", broken)
    IndexState.objects.update(requested=IndexState.get().requested + 1)  # a change to serve
    report = _rebuild_task()
    assert report["served"]
    assert Calibration.get().last_error == "MemoryError: no room for the scores"
    assert cutoffs.cutoff("text", 0.8).threshold == kept  # the last calibration stays
    status = staff_client.get("/api/status").json()["calibration"]
    assert status["error"] == "MemoryError: no room for the scores"
    assert "no room for the scores" in staff_client.get("/admin/search/indexstate/status/").content.decode()


def test_a_large_library_is_calibrated_on_a_capped_uniform_sample(monkeypatch):
    _library({name: VARIANTS for name in SEEDS})
    monkeypatch.setattr(library, "MAX_SAMPLE", 15)
    report = library.library_calibrate()
    row = Calibration.get()
    assert (report.library, report.sample, row.library, row.sample) == (24, 15, 24, 15)
    again = library.library_calibrate()
    assert Calibration.get().curves == row.curves and again.sample == 15  # the same sample each time
    assert np.isfinite(row.seconds)


def test_the_calibration_time_counts_in_the_spacing_of_rebuilds():
    """A rebuild waits twice the last rebuild and calibration together (search.dispatch), so that
    during a long ingest both take at most a third of the worker's time."""
    IndexState.get()
    IndexState.objects.update(seconds=5.0)
    Calibration.get()
    Calibration.objects.filter(pk=1).update(seconds=15.0)
    assert dispatch._rebuild_countdown() == pytest.approx(40.0)


def test_a_worker_starting_on_a_library_never_calibrated_calibrates_it_once():
    """A library indexed before calibration existed gets one when a worker starts; a later
    start, or the periodic sweep, leaves it to the rebuilds."""
    from search.ingest import sweep

    _library({name: VARIANTS for name in SEEDS})
    IndexState.get()
    IndexState.objects.update(done_request=F("requested"))  # served: nothing to rebuild
    assert sweep.index_sweep()["calibrated"] == 0
    assert sweep.index_sweep(at_start=True)["calibrated"] == 1
    assert cutoffs.cutoff("text", 0.8).threshold is not None
    assert sweep.index_sweep(at_start=True)["calibrated"] == 0
