"""The pages in a real browser (Chromium through Playwright) against the live server and a real
Celery worker: a staff member uploads a zip in the admin and watches it being indexed, then a
visitor searches by words, pages forward, drops an image on the search box, adds words to it,
follows "more like this", filters by a label and opens an image's page."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

import pytest

from tests.support.constants import UPLOAD_URL
from tests.support.images import image_bytes, zip_bytes

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

LABELS = ["sunset", "bicycle", "zebra"]
PER_LABEL = 4


def _library() -> dict[str, bytes]:
    """12 pictures in three folders; the folder names become their labels."""
    return {
        f"{label}/{n}.png": image_bytes(100 * (i + 1) + n)
        for i, label in enumerate(LABELS)
        for n in range(PER_LABEL)
    }


def _drop_file(page, data: bytes, name: str) -> None:
    """Drop a file on the search box, as a person dragging it from their desktop would."""
    page.evaluate(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: "image/png"}));
            const target = document.getElementById("dropzone");
            for (const type of ["dragenter", "dragover", "drop"]) {
                const init = {bubbles: true, cancelable: true, dataTransfer: transfer};
                target.dispatchEvent(new DragEvent(type, init));
            }
        }""",
        [base64.b64encode(data).decode(), name],
    )


def _paste_file(page, data: bytes, name: str) -> None:
    """Paste a picture, as after copying it from another application."""
    page.evaluate(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: "image/png"}));
            const init = {clipboardData: transfer, bubbles: true, cancelable: true};
            document.getElementById("q").dispatchEvent(new ClipboardEvent("paste", init));
        }""",
        [base64.b64encode(data).decode(), name],
    )


def _search_by_picture(page, base: str, put: Callable[..., None], data: bytes, name: str) -> None:
    """From the start page, ``put`` a picture on the search box (drop or paste): the results
    page's address names the query image, and the same picture comes first."""
    page.goto(f"{base}/")
    with page.expect_navigation():
        put(page, data, name)
    page.wait_for_url(re.compile(r"\?qimg=[0-9a-f]{32}$"))
    first_thumbnail = page.locator(".grid .card img").first.get_attribute("src")
    assert hashlib.sha256(data).hexdigest() in first_thumbnail


def _card_labels(page) -> list[str]:
    return [t.strip() for t in page.locator(".grid .card .tags").all_inner_texts()]


def test_upload_a_zip_then_search_by_words_image_labels_and_pages(
    redis_worker, live_server, staff_user, monkeypatch, page, page_problems, screenshot
):
    from search.query import ranking

    monkeypatch.setattr(ranking, "PAGE_SIZE", PER_LABEL)
    base = live_server.url
    files = _library()

    # Sign in to the admin; the status page is open before anything is uploaded.
    page.goto(f"{base}/admin/login/?next=/admin/search/indexstate/status/")
    page.fill("#id_username", staff_user.username)
    page.fill("#id_password", "pw-staff-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#status-page")
    status_page = page

    # Bulk-upload a zip in another tab: progress, then the batch's counts until it is done.
    upload = page.context.new_page()
    upload.goto(f"{base}{UPLOAD_URL}")
    upload.set_input_files(
        "#id_archive",
        files=[{"name": "photos.zip", "mimeType": "application/zip", "buffer": zip_bytes(files)}],
    )
    upload.check("#id_labels_from_dirs")
    upload.click("#upload-submit")
    upload.wait_for_selector("#batch-done:not([hidden])", timeout=90_000)
    assert upload.inner_text("#batch-done") == f"Done: {len(files)} ready, 0 failed."
    assert upload.inner_text("#upload-summary").startswith("Upload finished: 12 added")
    screenshot(upload, "admin-upload")

    # The status page caught up by itself (never reloaded): all ready, the index up to date.
    status_page.bring_to_front()
    status_page.wait_for_function(  # a function: the policy refuses the eval of a polled expression
        "() => document.getElementById('count-ready').textContent.trim() === '12'"
        " && document.getElementById('behind').textContent.trim() === 'Yes'"
        " && /^\\d+$/.test(document.getElementById('generation').textContent.trim())",
        timeout=60_000,
    )
    screenshot(status_page, "admin-status")

    # A costly action asks first: declining sends nothing, accepting runs it.
    status_page.once("dialog", lambda dialog: dialog.dismiss())
    status_page.click("button[value=reembed_all]")
    assert status_page.url.endswith("/admin/search/indexstate/status/")
    assert status_page.locator(".messagelist").count() == 0
    status_page.once("dialog", lambda dialog: dialog.accept())
    with status_page.expect_navigation():
        status_page.click("button[value=rebuild]")
    assert status_page.inner_text(".messagelist") == "An index rebuild was requested."

    # Search by words; the best match is labelled with them.
    search = page.context.new_page()
    search.goto(f"{base}/")
    screenshot(search, "start")
    search.fill("#q", "sunset")
    with search.expect_navigation():
        search.press("#q", "Enter")
    assert _card_labels(search) == ["sunset"] * PER_LABEL
    assert search.locator(".grid .card .why-bar").count() == PER_LABEL
    assert not search.is_visible("#w")  # the weight slider is for words and an image together
    screenshot(search, "results-words")

    # Page forward: the query is kept.
    with search.expect_navigation():
        search.click("a[rel=next]")
    assert "q=sunset" in search.url and "page=2" in search.url
    assert search.input_value("#q") == "sunset"
    assert search.inner_text(".page-number") == "Page 2"
    assert "sunset" not in _card_labels(search)
    screenshot(search, "results-page-2")

    # Drop a picture on the search box: the same picture comes first; the address is a link.
    _search_by_picture(search, base, _drop_file, files["zebra/2.png"], "query.png")
    assert search.is_visible("#query-image")
    screenshot(search, "results-image")

    # Words too: the weight slider appears, and the query mixes both.
    search.fill("#q", "bicycle")
    assert search.is_visible("#w")
    with search.expect_navigation():
        search.press("#q", "Enter")
    assert re.search(r"q=bicycle&qimg=[0-9a-f]{32}&w=0\.5", search.url)
    assert search.is_visible("#w")
    screenshot(search, "results-words-and-image")

    # "More like this" on the first result leaves that image out and shows its kind first.
    first = search.locator(".grid .card").first
    first_id = first.get_attribute("data-id")
    with search.expect_navigation():
        first.locator("a.more").click()
    assert search.url.endswith(f"?like={first_id}")
    assert first_id not in search.locator(".grid .card").evaluate_all("cards => cards.map(c => c.dataset.id)")
    screenshot(search, "results-more-like-this")

    # Filter by a label chip: it combines with the words, and can be removed again.
    search.goto(f"{base}/?q=sunset")
    with search.expect_navigation():
        search.locator("nav.chips a.chip", has_text="bicycle").click()
    assert "label=bicycle" in search.url and "q=sunset" in search.url
    assert _card_labels(search) == ["bicycle"] * PER_LABEL
    assert search.get_attribute(".chips a.chip.active", "aria-pressed") == "true"
    screenshot(search, "results-filtered")

    # An image's page: the full picture, its labels and its nearest neighbours.
    with search.expect_navigation():
        search.locator(".grid .card a.thumb").first.click()
    assert re.search(r"/image/\d+/$", search.url)
    assert search.inner_text(".detail h1") == "bicycle"
    assert search.locator("section .grid .card").count() == 11
    screenshot(search, "image-page")

    # Paste a picture instead; then clear it with the × on the search box.
    _search_by_picture(search, base, _paste_file, files["bicycle/3.png"], "clipboard.png")
    with search.expect_navigation():
        search.click("#image-clear")
    assert search.url == f"{base}/"
    assert search.is_hidden("#query-image")
    assert search.is_visible("text=Recently added")

    # The same results on a phone.
    phone = page.context.browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page_problems.watch(phone)
    try:
        small = phone.new_page()
        small.goto(f"{base}/?q=zebra")
        assert _card_labels(small)[0] == "zebra"
        screenshot(small, "results-phone")
    finally:
        phone.close()
