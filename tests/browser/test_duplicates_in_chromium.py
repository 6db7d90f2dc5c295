"""The near-duplicates page in a real browser (Chromium through Playwright) against the live server
and a real Celery worker: a staff member uploads originals and their copies; the worker embeds,
rebuilds and scans by itself; the page says a new scan finished and shows the groups; staff keep
one image of a group with every label of it, and the worker's next scan leaves one group, as the
API says too."""

from __future__ import annotations

import pytest

from gallery.models import Image
from tests.conftest import require_service
from tests.support import env
from tests.support.constants import UPLOAD_URL
from tests.support.images import zip_bytes
from tests.support.near_duplicates import TEST_THRESHOLD, copies
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PAGE = "/admin/search/duplicatescan/groups/"


@pytest.fixture
def duplicates_worker(start_worker, transactional_db, settings):
    """A real worker (solo pool, shared Redis) scanning with the tests' threshold, as this
    process does."""
    require_service(env.redis_available(), "Redis at 127.0.0.1:6379")
    settings.IMAGESEARCH_DUPLICATE_THRESHOLD = TEST_THRESHOLD
    return start_worker(env_overrides={"IMAGESEARCH_DUPLICATE_THRESHOLD": str(TEST_THRESHOLD)})


def _archive() -> bytes:
    """kestrel/ and harbour/: an original and three copies each; orchard/ and tram/: one alone."""
    entries = {}
    for name in ("kestrel", "harbour", "orchard", "tram"):
        files = (
            copies(name) if name in ("kestrel", "harbour") else {f"{name}.png": copies(name)[f"{name}.png"]}
        )
        entries.update({f"{name}/{file}": data for file, data in files.items()})
    return zip_bytes(entries)


def _group_sizes(page) -> list[int]:
    return [group.locator(".duplicate-member").count() for group in page.locator(".duplicate-group").all()]


def test_staff_find_the_copies_keep_one_with_all_labels_and_the_api_agrees(
    duplicates_worker, live_server, staff_user, page, screenshot
):
    base = live_server.url
    page.goto(f"{base}/admin/login/?next={PAGE}")
    page.fill("#id_username", staff_user.username)
    page.fill("#id_password", "pw-staff-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#duplicates-page")
    assert "No scan has finished yet" in page.inner_text("#scan-result")
    duplicates_page = page

    upload = page.context.new_page()
    upload.goto(f"{base}{UPLOAD_URL}")
    upload.set_input_files(
        "#id_archive", files=[{"name": "copies.zip", "mimeType": "application/zip", "buffer": _archive()}]
    )
    upload.check("#id_labels_from_dirs")
    upload.click("#upload-submit")
    upload.wait_for_selector("#batch-done:not([hidden])", timeout=90_000)
    assert upload.inner_text("#batch-done") == "Done: 10 ready, 0 failed."
    upload.close()

    # The page, never reloaded, says that the worker's scan finished; its link shows the groups.
    duplicates_page.wait_for_selector("#scan-new:not([hidden])", timeout=60_000)
    with duplicates_page.expect_navigation():
        duplicates_page.click("#scan-new a")
    assert "2 groups among 10 images" in duplicates_page.inner_text("#scan-result")
    assert _group_sizes(duplicates_page) == [4, 4]
    kestrel = duplicates_page.locator(".duplicate-group", has_text="kestrel-cropped.jpg")
    for text in ("kestrel.png", "kestrel-q60.jpg", "kestrel-half.png", "96×72", "192×144", "Uploaded"):
        assert text in kestrel.inner_text()
    screenshot(duplicates_page, "admin-duplicates")

    # Another label on one copy; then keep the half-size copy with every label of the group.
    half = Image.objects.get(original_name="kestrel-half.png")
    q60 = Image.objects.get(original_name="kestrel-q60.jpg")
    from gallery.services import image_relabel

    image_relabel(image=q60, names=["kestrel", "bird of prey"])
    kestrel.locator(f"#keep-{kestrel.locator('input[name=group]').input_value()}-{half.pk}").check()
    duplicates_page.once("dialog", lambda dialog: dialog.accept())
    with duplicates_page.expect_navigation():
        kestrel.locator("button[value=merge_labels]").click()
    assert f"Kept image {half.pk}; deleted 3 near-duplicate(s)." in duplicates_page.inner_text(".messagelist")
    assert _group_sizes(duplicates_page) == [4]
    screenshot(duplicates_page, "admin-duplicates-resolved")

    kept = Image.objects.filter(original_name__startswith="kestrel")
    assert [image.pk for image in kept] == [half.pk]
    assert sorted(kept[0].label_names) == ["bird of prey", "kestrel"]

    # The API, with the same session, gives the same groups once the worker has scanned again.
    def api_groups() -> tuple[int, list[list[str]]]:
        data = duplicates_page.request.get(f"{base}/api/duplicates").json()
        return data["scan"]["number"], [sorted(i["labels"][0] for i in g["images"]) for g in data["groups"]]

    # The page's status URL, polled from the test: a page function that fetched it let full runs
    # read the API while the worker's second scan had not yet counted (scan number 1).
    status_url = base + duplicates_page.get_attribute("#duplicates-page", "data-url")

    def scanned_again() -> bool:
        scan = duplicates_page.request.get(status_url).json()
        return scan["number"] >= 2 and not scan["running"]

    wait_for(scanned_again, timeout=60, what="the worker's scan after the merge")
    number, groups = api_groups()
    assert number >= 2 and groups == [["harbour"] * 4]
    anonymous = duplicates_page.context.browser.new_context()
    assert anonymous.request.get(f"{base}/api/duplicates").status == 401
    anonymous.close()
