"""Phone photos in a real browser (Chromium through Playwright) against the live server and a real
Celery worker: a staff member uploads a HEIC and an AVIF file in the admin (the picker given no
type, as browsers outside Apple's do for HEIC); the worker embeds them; their thumbnails in the
results and their display copies on their pages open in the browser; the page offers the
original, byte for byte, for download. A HEIC dropped on the search box is turned away by the box
itself, naming the formats a search image may be in, as the server gave them to the page."""

from __future__ import annotations

import base64

import pytest

from tests.support.constants import UPLOAD_URL
from tests.support.images import image_bytes, phone_image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

HEIC = phone_image_bytes(70, "HEIF", size=(240, 180))
AVIF = phone_image_bytes(71, "AVIF", size=(240, 180))


def _shown(page, selector: str) -> list[int]:
    """The decoded widths of the pictures ``selector`` matches (0: the browser could not show it)."""
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    return page.locator(selector).evaluate_all("images => images.map(i => i.naturalWidth)")


def _drop_file(page, data: bytes, name: str) -> None:
    page.evaluate(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: ""}));
            const target = document.getElementById("dropzone");
            for (const type of ["dragenter", "dragover", "drop"]) {
                const init = {bubbles: true, cancelable: true, dataTransfer: transfer};
                target.dispatchEvent(new DragEvent(type, init));
            }
        }""",
        [base64.b64encode(data).decode(), name],
    )


def test_heic_and_avif_upload_show_in_results_and_pages_and_download_as_uploaded(
    redis_worker, live_server, staff_user, page, screenshot
):
    base = live_server.url
    page.goto(f"{base}/admin/login/?next={UPLOAD_URL}")
    page.fill("#id_username", staff_user.username)
    page.fill("#id_password", "pw-staff-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#upload-form")
    assert "HEIC" in page.inner_text("#accepted-formats")
    page.set_input_files(
        "#id_files",
        files=[
            {"name": "IMG_0070.HEIC", "mimeType": "", "buffer": HEIC},
            {"name": "PXL_0071.avif", "mimeType": "image/avif", "buffer": AVIF},
            {"name": "other.png", "mimeType": "image/png", "buffer": image_bytes(72, size=(240, 180))},
        ],
    )
    page.fill("#id_labels", "harbour")
    page.click("#upload-submit")
    page.wait_for_selector("#batch-done:not([hidden])", timeout=90_000)
    assert page.inner_text("#batch-done") == "Done: 3 ready, 0 failed."

    # The results: three thumbnails, each decoded by the browser.
    page.goto(f"{base}/?q=harbour")
    assert page.locator(".grid .card").count() == 3
    assert all(width > 0 for width in _shown(page, ".grid .card img"))
    screenshot(page, "phone-formats-results")

    for name, data in (("IMG_0070.HEIC", HEIC), ("PXL_0071.avif", AVIF)):
        page.goto(f"{base}/?q=harbour")
        with page.expect_navigation():
            page.locator(".grid .card", has=page.locator(f"img[src*='{_sha(data)}']")).locator(
                "a.thumb"
            ).click()
        [width] = _shown(page, ".detail-image img")
        assert width == 240  # the display copy, full size, shown by the browser
        assert "/media/display/" in page.get_attribute(".detail-image img", "src")
        link = page.locator("#download-original")
        assert link.get_attribute("download") == name
        with page.expect_download() as download:
            link.click()
        assert open(download.value.path(), "rb").read() == data  # the original, as uploaded
        screenshot(page, f"phone-formats-page-{name.rsplit('.', 1)[1].lower()}")

    # A HEIC dropped on the search box (no type, as Chromium gives it): refused there, in words.
    page.goto(f"{base}/")
    _drop_file(page, HEIC, "IMG_0070.HEIC")
    assert page.inner_text("#search-status") == (
        "That file is not an image the search can read (JPEG, PNG, WebP or GIF)."
    )
    assert page.url == f"{base}/"


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
