"""Label suggestions in a real browser (Chromium through Playwright) against the live server and a
real Celery worker: staff upload three labelled folders, then a picture without labels; the
worker embeds them and runs the labelling pass by itself; the *Label suggestions* page lists the
unlabelled picture first with its label suggested first (screenshot), staff accept it (screenshot
after), and the picture is then found by the label's words on the search page."""

from __future__ import annotations

import pytest

from gallery.models import Image
from tests.search.labelling.test_labelling import VARIANTS, variants
from tests.support.constants import UPLOAD_URL
from tests.support.images import zip_bytes

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

REVIEW = "/admin/search/labellingpass/review/"
NAMES = ("kestrel", "harbour", "orchard")


def _upload(page, base: str, **fields) -> None:
    page.goto(f"{base}{UPLOAD_URL}")
    if "archive" in fields:
        page.set_input_files(
            "#id_archive",
            files=[{"name": "l.zip", "mimeType": "application/zip", "buffer": fields["archive"]}],
        )
        page.check("#id_labels_from_dirs")
    if "files" in fields:
        page.set_input_files("#id_files", files=fields["files"])
        page.check("#id_unlabelled")
    page.click("#upload-submit")
    page.wait_for_selector("#batch-done:not([hidden])", timeout=90_000)
    assert "0 failed" in page.inner_text("#batch-done")


def test_staff_review_suggestions_and_accepting_one_makes_the_picture_findable(
    redis_worker, live_server, staff_user, page, screenshot
):
    base = live_server.url
    page.goto(f"{base}/admin/login/?next={UPLOAD_URL}")
    page.fill("#id_username", staff_user.username)
    page.fill("#id_password", "pw-staff-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#upload-form")
    library = {f"{name}/{n}.jpg": data for name in NAMES for n, data in enumerate(variants(name))}
    _upload(page, base, archive=zip_bytes(library))
    copy = variants("kestrel", 1, first=VARIANTS)[0]
    _upload(page, base, files=[{"name": "new-bird.jpg", "mimeType": "image/jpeg", "buffer": copy}])
    new_bird = Image.objects.get(original_name="new-bird.jpg")
    assert new_bird.label_names == []

    # The worker's pass after that embedding lists the picture (the page is reloaded until then).
    card = f".suggestion-image[data-image='{new_bird.pk}']"
    for _ in range(120):
        page.goto(f"{base}{REVIEW}")
        if page.locator(card).count():
            break
        page.wait_for_timeout(500)
    first = page.locator(".suggestion-image").first
    assert first.get_attribute("data-image") == str(new_bird.pk)
    assert first.locator(".no-labels").inner_text() == "No labels yet"
    assert first.locator(".suggestion").first.get_attribute("data-label") == "kestrel"
    screenshot(page, "label-suggestions-before-accept")

    with page.expect_navigation():
        first.locator(".suggestion").first.locator("button[value=accept]").click()
    assert "Label added to image" in page.inner_text(".messagelist")
    assert page.locator(card).count() == 0 or "kestrel" not in [
        s.get_attribute("data-label") for s in page.locator(f"{card} .suggestion").all()
    ]
    screenshot(page, "label-suggestions-after-accept")
    new_bird.refresh_from_db()
    assert new_bird.label_names == ["kestrel"]

    # The worker recomputes its hybrid and the index: the label's words find it.
    for _ in range(120):
        page.goto(f"{base}/?q=kestrel")
        ids = page.locator(".grid .card").evaluate_all("cards => cards.map(c => c.dataset.id)")
        if str(new_bird.pk) in ids[: VARIANTS + 1]:
            break
        page.wait_for_timeout(500)
    assert str(new_bird.pk) in ids[: VARIANTS + 1]
    screenshot(page, "label-suggestions-found-by-words")
