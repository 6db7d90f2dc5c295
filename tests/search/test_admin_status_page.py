"""The admin index status page: its JSON (polled by the page) and its actions."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from gallery.models import Image
from search import dispatch
from search.ingest import pipeline, rebuild
from search.models import IndexState
from tests.factories import create_images

pytestmark = pytest.mark.django_db

STATUS = "/admin/search/indexstate/status/"


def test_the_status_json_reports_counts_generation_and_whether_behind(staff_client):
    ids = create_images([(1, ["a"]), (2, ["b"]), (3, ["c"])])
    data = staff_client.get(STATUS.replace("status/", "status.json")).json()
    assert data["counts"] == {"pending": 3, "ready": 0, "failed": 0}
    assert (data["generation"], data["behind"]) == (None, False)  # nothing ready: nothing to index

    pipeline.images_embed(image_ids=ids[:2])
    data = staff_client.get(STATUS.replace("status/", "status.json")).json()
    assert data["counts"]["ready"] == 2
    assert data["behind"] is True

    rebuild.index_rebuild()
    data = staff_client.get(STATUS.replace("status/", "status.json")).json()
    assert (data["generation"], data["vectors"], data["dimension"], data["behind"]) == (1, 2, 64, False)
    assert data["size_bytes"] > 0


def test_the_status_page_updates_itself_and_confirms_costly_actions(staff_client):
    html = staff_client.get(STATUS).content.decode()
    assert 'data-url="/admin/search/indexstate/status.json"' in html
    assert "js/admin-status.js" in html
    buttons = {
        re.search(r'value="(\w+)"', tag)[1]: tag
        for tag in re.findall(r'<button [^>]*name="action"[^>]*>', html)
    }
    assert set(buttons) == {"embed_missing", "retry_failed", "rebuild", "reembed_all"}
    assert {action for action, tag in buttons.items() if "data-confirm=" in tag} == {"rebuild", "reembed_all"}


def test_retry_failed_puts_failed_images_back_in_the_queue(staff_client):
    ids = create_images([(1, ["a"]), (2, ["b"])])
    Image.objects.filter(pk=ids[0]).update(status="failed", failure_reason="x")
    response = staff_client.post(STATUS, {"action": "retry_failed"}, follow=True)
    assert b"1 failed image(s) queued again." in response.content
    assert Image.objects.get(pk=ids[0]).status == "pending"


def test_the_status_json_is_for_staff_only():
    response = Client().get(STATUS.replace("status/", "status.json"))
    assert response.status_code == 302


def _library_of_every_status() -> dict[str, int]:
    """Two ready images, one failed with no vector, one pending that no one embedded yet."""
    ready, other, failed = create_images([(1, ["a"]), (2, ["b"]), (3, ["c"])])
    pipeline.images_embed(image_ids=[ready, other, failed])
    Image.objects.filter(pk=failed).update(
        status=Image.Status.FAILED, failure_reason="x", image_vector=None, embedding_model=""
    )
    [pending] = create_images([(4, ["d"])])
    return {"ready": ready, "other ready": other, "failed": failed, "pending": pending}


def _rows() -> dict[int, tuple]:
    return {
        pk: (status, vector)
        for pk, status, vector in Image.objects.values_list("pk", "status", "image_vector")
    }


# What each action hands to the worker for embedding, and which rows it changes.
_ACTIONS = {
    "embed_missing": (["failed", "pending"], ["failed"]),
    "retry_failed": (["failed"], ["failed"]),
    "reembed_all": (["ready", "other ready", "failed", "pending"], ["ready", "other ready", "failed"]),
}


@pytest.mark.parametrize("action", list(_ACTIONS))
def test_each_status_action_embeds_what_it_says_and_leaves_the_rest_alone(
    staff_client, sent, django_capture_on_commit_callbacks, action
):
    images = _library_of_every_status()
    before = _rows()
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(STATUS, {"action": action})
    assert response.status_code == 302

    handed_over, changed = _ACTIONS[action]
    embedded = [pk for name, options in sent if name == dispatch.EMBED_TASK for pk in options["args"][0]]
    assert sorted(embedded) == sorted(images[name] for name in handed_over)
    after = _rows()
    for name, pk in images.items():
        if name in changed:
            assert after[pk] == (Image.Status.PENDING, None), name
        else:
            assert after[pk] == before[pk], name


def test_an_unknown_status_action_is_refused_and_changes_nothing(
    staff_client, sent, django_capture_on_commit_callbacks
):
    _library_of_every_status()
    before, requested = _rows(), IndexState.get().requested
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(STATUS, {"action": "drop_everything"}, follow=True)
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == ["Unknown action."]
    assert sent == []
    assert (_rows(), IndexState.get().requested) == (before, requested)


@pytest.mark.parametrize("runtime, provider", [("onnx", "CPUExecutionProvider"), ("torch", "cpu")])
def test_the_status_page_names_the_runtime_and_where_it_runs(staff_client, settings, runtime, provider):
    from search import encoder

    settings.IMAGESEARCH_ENCODER = runtime
    encoder.reset()
    encoder.ensure_models()
    data = staff_client.get(STATUS.replace("status/", "status.json")).json()
    assert data["encoder"] == f"{runtime} on {provider}, fp32"
    assert (data["int8_agreement"], data["int8_reason"]) == (None, "")  # int8 not asked for
    html = staff_client.get(STATUS).content.decode()
    assert f'<code id="encoder">{runtime} on {provider}, fp32</code>' in html
    encoder.reset()


def test_the_status_page_shows_the_generation_s_picture_index(staff_client):
    def picture_row() -> str:
        html = staff_client.get(STATUS).content.decode()
        return re.search(r'<td id="picture-index">(.*?)</td>', html, re.S)[1]

    assert picture_row() == "–"  # nothing built yet
    ids = create_images([(1, ["a"]), (2, ["b"]), (3, ["c"])])
    pipeline.images_embed(image_ids=ids)
    rebuild.index_rebuild()
    row = picture_row()
    assert row.startswith("3 image vector(s), flat")
    assert "nearest by picture" in row
