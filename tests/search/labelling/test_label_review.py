"""Reviewing the labelling pass's results as staff do: the admin's *Label suggestions* page
(images without labels first; accept one, accept all above a confidence, reject), the image's
own admin page, the *Likely mislabels* page, and the same through the API (staff only)."""

from __future__ import annotations

import pytest
from django.test import Client

from api.tokens import api_token_create
from gallery.models import Image
from search.labelling.passes import labelling_pass
from search.models import LabelSuggestion, Mislabel
from tests.search.labelling.test_labelling import VARIANTS, _index, _store, variants

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_store")]

PAGE = "/admin/search/labellingpass/review/"
MISLABELS = "/admin/search/labellingpass/mislabels/"


@pytest.fixture
def reviewed() -> dict[str, int]:
    """Three labels of six alike pictures each, an unlabelled copy of a kestrel, a harbour
    picture labelled kestrel; embedded and passed over."""
    ids = [
        pk for name in ("kestrel", "harbour", "orchard") for pk in _store(variants(name), [name], name=name)
    ]
    [copy] = _store(variants("kestrel", 1, first=VARIANTS), [], name="copy")
    [wrong] = _store(variants("harbour", 1, first=VARIANTS), ["kestrel"], name="wrong")
    _index([*ids, copy, wrong])
    assert labelling_pass().ran
    return {"copy": copy, "wrong": wrong}


@pytest.fixture
def api(staff_user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=staff_user, name='tests')[1]}")


def _top(image_id: int) -> LabelSuggestion:
    return LabelSuggestion.objects.filter(image_id=image_id, rejected=False).order_by("-confidence").first()


def test_the_review_page_lists_unlabelled_images_first_and_accepting_adds_the_label(reviewed, staff_client):
    page = staff_client.get(PAGE)
    assert page.status_code == 200
    first = page.context["shown"][0]
    assert (first[0].pk, first[1][0].label.name) == (reviewed["copy"], "kestrel")
    assert "No labels yet" in page.content.decode()
    suggestion = _top(reviewed["copy"])
    response = staff_client.post(PAGE, {"action": "accept", "suggestion": suggestion.pk, "next": PAGE})
    assert response.status_code == 302 and response["Location"] == PAGE
    assert Image.objects.get(pk=reviewed["copy"]).label_names == ["kestrel"]
    again = staff_client.post(PAGE, {"action": "accept", "suggestion": suggestion.pk}, follow=True)
    assert "no longer open" in again.content.decode()


def test_reject_and_accept_above_from_the_page(reviewed, staff_client):
    rejected = _top(reviewed["copy"])
    staff_client.post(PAGE, {"action": "reject", "suggestion": rejected.pk})
    assert LabelSuggestion.objects.get(pk=rejected.pk).rejected
    open_rows = LabelSuggestion.objects.filter(rejected=False)
    cut = max(s.confidence for s in open_rows)
    staff_client.post(PAGE, {"action": "accept_above", "confidence": str(cut)})
    assert not LabelSuggestion.objects.filter(rejected=False, confidence__gte=cut).exists()
    bad = staff_client.post(PAGE, {"action": "accept_above", "confidence": "very"}, follow=True)
    assert "number from 0 to 1" in bad.content.decode()


def test_the_image_page_shows_its_suggestions_with_accept_and_reject(reviewed, staff_client):
    page = staff_client.get(f"/admin/gallery/image/{reviewed['copy']}/change/").content.decode()
    assert 'id="image-suggestions"' in page and "kestrel" in page
    assert f'value="{_top(reviewed["copy"]).pk}"' in page


def test_the_mislabels_page_lists_the_mislabelled_image_and_relabels_it(reviewed, staff_client):
    page = staff_client.get(MISLABELS)
    [row] = page.context["rows"]
    assert (row.image_id, row.label.name, row.better.name) == (reviewed["wrong"], "kestrel", "harbour")
    staff_client.post(MISLABELS, {"action": "relabel", "mislabel": row.pk})
    assert Image.objects.get(pk=reviewed["wrong"]).label_names == ["harbour"]
    assert not Mislabel.objects.exists()


def test_a_kept_label_is_not_listed_again(reviewed, staff_client, api):
    [row] = staff_client.get(MISLABELS).context["rows"]
    staff_client.post(MISLABELS, {"action": "keep", "mislabel": row.pk})
    assert Image.objects.get(pk=reviewed["wrong"]).label_names == ["kestrel"]  # unchanged
    labelling_pass()
    assert list(staff_client.get(MISLABELS).context["rows"]) == []
    assert api.get("/api/mislabels").json()["mislabels"] == []
    assert api.post(f"/api/mislabels/{row.pk}/keep").status_code == 404  # kept already


def test_a_viewer_without_change_permission_cannot_accept(reviewed, client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_image"))
    client.force_login(viewer)
    assert client.get(PAGE).status_code == 200
    assert client.post(PAGE, {"action": "accept", "suggestion": _top(reviewed["copy"]).pk}).status_code == 403


def test_the_api_lists_accepts_rejects_and_reports_mislabels(reviewed, api, client):
    listed = api.get("/api/suggestions").json()
    first = listed["images"][0]
    assert first["image"]["id"] == reviewed["copy"] and first["image"]["labels"] == []
    assert first["suggestions"][0]["label"] == "kestrel" and 0 < first["suggestions"][0]["confidence"] <= 1
    assert listed["labelling"]["images"] == 3 * VARIANTS + 2
    top = first["suggestions"][0]["id"]
    accepted = api.post(f"/api/suggestions/{top}/accept")
    assert accepted.status_code == 200 and accepted.json()["labels"] == ["kestrel"]
    assert api.post(f"/api/suggestions/{top}/accept").status_code == 404
    other = LabelSuggestion.objects.filter(rejected=False).first()
    assert api.post(f"/api/suggestions/{other.pk}/reject").status_code == 204
    assert LabelSuggestion.objects.get(pk=other.pk).rejected
    done = api.post("/api/suggestions/accept", {"min_confidence": 0.0}, content_type="application/json")
    assert done.status_code == 200 and done.json()["labels"] >= 1
    assert not LabelSuggestion.objects.filter(rejected=False).exists()
    [mislabel] = api.get("/api/mislabels").json()["mislabels"]
    assert (mislabel["image"]["id"], mislabel["label"], mislabel["better"]) == (
        reviewed["wrong"],
        "kestrel",
        "harbour",
    )
    # Staff only.
    assert client.get("/api/suggestions").status_code == 401
