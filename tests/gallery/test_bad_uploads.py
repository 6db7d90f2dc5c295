"""Bad uploads, through every way in: the admin upload page, the JSON API, ``import_images`` and
the search page's image query. Each bad file gets its reason (a page, or a 4xx with a JSON
error), never a 500, and leaves no row, no file and no index entry behind; each awkward but
legitimate image is stored under a generated name and embedded.

The corpus is :mod:`tests.support.bad_files`; the fuzzing (hypothesis) is at the end.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connections
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gallery.models import Image
from search.ingest import pipeline, rebuild
from search.stores import faiss as search_index
from tests.support.bad_files import ACCEPTED, REFUSED, Sample
from tests.support.constants import UPLOAD_URL
from tests.support.images import image_bytes, zip_bytes

pytestmark = pytest.mark.django_db


def _files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _assert_nothing_stored() -> None:
    assert Image.objects.count() == 0
    assert _files() == []
    assert search_index.read_current_manifest(settings.INDEX_DIR) is None


def _upload(client, sample: Sample, **extra):
    file = SimpleUploadedFile(sample.name, sample.data, "application/octet-stream")
    return client.post(UPLOAD_URL, {"files": [file], "labels": "hostile", **extra})


# --- Refused: every way in ----------------------------------------------------------------------


@pytest.mark.parametrize("sample", REFUSED, ids=repr)
def test_a_bad_file_is_refused_by_the_upload_page_and_the_api_with_its_reason(sample, staff_client):
    response = _upload(staff_client, sample)
    assert response.status_code in (200, 400)  # a result page, or the form's error
    html = response.content.decode()
    assert sample.reason in html
    assert "1 added" not in html
    _assert_nothing_stored()

    file = SimpleUploadedFile(sample.name, sample.data, "application/octet-stream")
    response = staff_client.post("/api/images", {"files": [file], "labels": "hostile"})
    assert response.status_code == 400
    assert sample.reason in response.json()["error"]
    _assert_nothing_stored()


def test_import_images_refuses_every_bad_file_with_its_reason(tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    for sample in REFUSED:
        (folder / f"{sample.id}-{sample.name}").write_bytes(sample.data)
    out = io.StringIO()
    call_command("import_images", str(folder), "--label", "hostile", stdout=out, stderr=io.StringIO())
    output = out.getvalue()
    assert f"0 added, 0 skipped as duplicates, {len(REFUSED)} refused." in output
    for sample in REFUSED:
        line = next(line for line in output.splitlines() if f"{sample.id}-{sample.name}:" in line)
        assert sample.reason in line, line
    _assert_nothing_stored()


# A query image is decoded by its first frame only: a long animation is no bad query. HEIC and
# AVIF are no query formats at all (tests/gallery/test_phone_formats.py), damaged or not.
QUERY_REFUSED = [
    sample
    for sample in REFUSED
    if "frames" not in sample.reason and not sample.name.endswith((".heic", ".avif"))
]


@pytest.mark.parametrize("sample", QUERY_REFUSED, ids=repr)
def test_a_bad_file_as_a_search_query_is_a_clear_400_and_is_not_kept(sample, client):
    file = SimpleUploadedFile(sample.name, sample.data, "application/octet-stream")
    page = client.post("/", {"image": file})
    assert page.status_code == 400
    assert sample.reason in page.context["error"]
    file.seek(0)
    api = client.post("/api/search", {"image": file})
    assert api.status_code == 400
    assert sample.reason in api.json()["error"]
    _assert_nothing_stored()


# --- Accepted: awkward but legitimate images ----------------------------------------------------


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow on the broken EXIF sample
@pytest.mark.parametrize("sample", ACCEPTED, ids=repr)
def test_an_awkward_image_is_stored_under_a_generated_name_embedded_and_found(sample, staff_client):
    response = _upload(staff_client, sample)
    assert response.status_code == 200
    assert "1 added" in response.content.decode()
    image = Image.objects.get()
    assert image.file.name == f"images/{image.sha256[:2]}/{image.sha256}.{sample.stored_as}"
    assert image.thumbnail.name == f"thumbnails/{image.sha256[:2]}/{image.sha256}.jpg"
    # Formats not every browser shows (TIFF, HEIC, AVIF) get a JPEG copy for the pages.
    shown_as_is = sample.stored_as in ("jpg", "png", "gif", "bmp", "webp")
    assert image.display.name == ("" if shown_as_is else f"display/{image.sha256[:2]}/{image.sha256}.jpg")
    stored = len(_files())
    assert stored == (2 if shown_as_is else 3)

    pipeline.images_embed(image_ids=[image.pk])
    image.refresh_from_db()
    assert image.status == Image.Status.READY, image.failure_reason
    rebuild.index_rebuild()
    page = staff_client.post("/", {"image": SimpleUploadedFile(sample.name, sample.data)})
    if sample.stored_as in ("jpg", "png", "webp", "gif"):
        assert page.status_code == 200
        assert page.context["page"].hits[0].image.pk == image.pk
    else:  # staff may store it; as a query only the formats browsers send are decoded
        assert page.status_code == 400
        assert "JPEG, PNG, WebP or GIF" in page.context["error"]
    assert len(_files()) == stored  # the query image is not kept


def test_a_png_html_polyglot_is_served_as_an_inert_png(staff_client):
    [polyglot] = [s for s in ACCEPTED if s.id == "png-html-polyglot"]
    _upload(staff_client, polyglot)
    image = Image.objects.get()
    response = Client().get(image.file.url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]  # even opened directly, no script runs
    assert b"".join(response.streaming_content) == polyglot.data


# --- Names: path traversal, Unicode, absurd lengths ---------------------------------------------

HOSTILE_NAMES = [
    "../../../../etc/cron.d/evil.png",
    "..\\..\\windows\\system32\\evil.png",
    "/etc/passwd.png",
    "~/.ssh/authorized_keys.png",
    "фото заката 🌅.png",
    "غروب الشمس.png",
    "\u202egnp.exe.png",  # right-to-left override
    "con.png",
    "a" * 300 + ".png",
    "no-extension",
    ".hidden.png",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_file_name_never_reaches_the_file_system(name, staff_client, tmp_path):
    data = image_bytes(60)
    response = staff_client.post(UPLOAD_URL, {"files": [SimpleUploadedFile(name, data)], "labels": "x"})
    assert response.status_code == 200
    image = Image.objects.get()
    assert image.file.name == f"images/{image.sha256[:2]}/{image.sha256}.png"
    assert len(image.original_name) <= 255
    assert "/" not in image.original_name and "\\" not in image.original_name
    assert {p.relative_to(settings.MEDIA_ROOT).parts[0] for p in _files()} == {"images", "thumbnails"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]  # nothing beside MEDIA_ROOT


def test_traversal_names_inside_a_zip_never_reach_the_file_system(staff_client, tmp_path):
    archive = zip_bytes(
        {
            "../../../../tmp/evil.png": image_bytes(61),
            "/absolute/evil.png": image_bytes(62),
            "good/..\\..\\evil.png": image_bytes(63),
            "дома/фото.png": image_bytes(64),
        }
    )
    response = staff_client.post(
        UPLOAD_URL,
        {"archive": SimpleUploadedFile("photos.zip", archive), "labels_from_dirs": "on", "labels": "x"},
    )
    assert response.status_code == 200
    # Entries that climb out with ".." or are named absolutely are refused with their reason (listed
    # on the page); the others are stored under generated names, their folder names only labels.
    html = response.content.decode()
    assert "climbs out of the archive" in html and "an absolute name" in html
    assert sorted(i.original_name for i in Image.objects.all()) == ["фото.png"]
    assert set(Image.objects.get(original_name="фото.png").label_names) == {"x", "дома"}
    for image in Image.objects.all():
        assert image.file.name == f"images/{image.sha256[:2]}/{image.sha256}.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]
    assert not Path("/tmp/evil.png").exists() and not Path("/absolute").exists()

    (tmp_path / "archive.zip").write_bytes(archive)
    out = io.StringIO()
    call_command(
        "import_images", str(tmp_path / "archive.zip"), "--label", "y", stdout=out, stderr=io.StringIO()
    )
    assert "0 added, 1 skipped as duplicates, 3 refused." in out.getvalue()
    (tmp_path / "archive.zip").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]
    assert len(_files()) == 2  # the one stored image and its thumbnail


# --- Limits -------------------------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_with_the_limit(staff_client, settings):
    settings.IMAGESEARCH_MAX_UPLOAD_BYTES = 4000
    settings.IMAGESEARCH_MAX_QUERY_IMAGE_BYTES = 4000
    big = image_bytes(65, "PNG", size=(200, 200))
    assert len(big) > 4000
    response = staff_client.post(UPLOAD_URL, {"files": [SimpleUploadedFile("big.png", big)], "labels": "x"})
    assert "the limit is 0.0 MB" in response.content.decode()
    _assert_nothing_stored()
    page = Client().post("/", {"image": SimpleUploadedFile("big.png", big)})
    assert page.status_code == 400 and "search images are at most 0.0 MB" in page.context["error"]


def test_more_files_than_allowed_in_one_request_are_refused_with_a_message(staff_client, settings):
    settings.IMAGESEARCH_MAX_UPLOAD_FILES = 3
    files = [SimpleUploadedFile(f"f{i}.png", image_bytes(70 + i)) for i in range(4)]
    response = staff_client.post(UPLOAD_URL, {"files": files, "labels": "x"})
    assert response.status_code == 400
    assert "At most 3 files per upload; you sent 4." in response.content.decode()
    _assert_nothing_stored()


def test_more_files_than_django_parses_are_a_400_not_a_500(staff_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 5
    files = [SimpleUploadedFile(f"f{i}.png", image_bytes(80 + i)) for i in range(6)]
    response = staff_client.post(UPLOAD_URL, {"files": files, "labels": "x"})
    assert response.status_code == 400
    assert "too many files" in response.content.decode().lower()
    _assert_nothing_stored()


def test_more_form_fields_than_allowed_are_a_400(staff_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 50
    response = staff_client.post(UPLOAD_URL, {f"field{i}": "x" for i in range(60)})
    assert response.status_code == 400
    _assert_nothing_stored()


@pytest.mark.parametrize("length", ["lots", "-5", "1e9"])
def test_a_malformed_content_length_is_a_400(staff_client, length):
    response = staff_client.generic(
        "POST", UPLOAD_URL, b"x" * 10, content_type="application/octet-stream", CONTENT_LENGTH=length
    )
    assert response.status_code == 400
    _assert_nothing_stored()


def test_a_request_body_over_the_limit_is_refused_before_it_is_read(staff_client, settings):
    settings.IMAGESEARCH_MAX_REQUEST_BYTES = 2048
    big = image_bytes(66, "PNG", size=(200, 200))
    response = staff_client.post(UPLOAD_URL, {"files": [SimpleUploadedFile("big.png", big)], "labels": "x"})
    assert response.status_code == 413
    assert "the limit is" in response.content.decode()
    _assert_nothing_stored()


# --- The same file twice at the same time -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_same_file_uploaded_twice_at_the_same_time_is_stored_once(staff_user):
    data = image_bytes(90, "JPEG", size=(400, 300))
    barrier = threading.Barrier(2)
    responses: list = []

    def upload() -> None:
        try:
            client = Client()
            client.force_login(staff_user)
            file = SimpleUploadedFile("same.jpg", data)
            barrier.wait()
            responses.append(
                client.post(UPLOAD_URL, {"files": [file], "labels": "twin"}, HTTP_ACCEPT="application/json")
            )
        finally:
            connections.close_all()  # this thread's own database connection

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    results = sorted((len(r.json()["added"]), len(r.json()["duplicates"])) for r in responses)
    assert results == [(0, 1), (1, 0)]
    image = Image.objects.get()
    assert [p.relative_to(settings.MEDIA_ROOT).as_posix() for p in _files()] == [
        image.file.name,
        image.thumbnail.name,
    ]


# --- Fuzzing ------------------------------------------------------------------------------------

_BASES = [
    image_bytes(100, "PNG", size=(24, 18)),
    image_bytes(101, "JPEG", size=(24, 18)),
    image_bytes(102, "GIF"),
]


@st.composite
def _mangled_images(draw) -> bytes:
    """A valid image with bytes flipped, cut short or spliced: mostly broken, sometimes not."""
    data = bytearray(draw(st.sampled_from(_BASES)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))
    return bytes(data)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.one_of(st.binary(max_size=2048), _mangled_images()),
    # Names a browser can send: Django's own UploadedFile refuses "", "." and ".." as a basename.
    name=st.text(max_size=40).filter(lambda n: n == "" or os.path.basename(n) not in ("", ".", "..")),
)
def test_fuzzed_uploads_are_stored_whole_or_refused_with_a_reason(staff_client, data, name):
    before = Image.objects.count()
    file = SimpleUploadedFile(name or "upload", data)
    response = staff_client.post(
        UPLOAD_URL, {"files": [file], "labels": "fuzz"}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code in (200, 400), response.content[:500]
    body = response.json()
    if response.status_code == 200:
        assert len(body["added"]) + len(body["duplicates"]) + len(body["refused"]) == 1
        assert all(r["reason"] for r in body["refused"])
        assert Image.objects.count() == before + len(body["added"])
    else:
        assert body["error"]
        assert Image.objects.count() == before
    assert len(_files()) == 2 * Image.objects.count()  # every row has both files, no file lacks a row


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.one_of(st.sampled_from(_BASES), st.binary(max_size=2048), _mangled_images()))
def test_fuzzed_query_images_answer_a_page_never_a_500(library, client, data):
    # A library is indexed, so that every query image the search accepts reaches the index.
    page = client.post("/", {"image": SimpleUploadedFile("q", data)})
    assert page.status_code in (200, 400), page.content[:500]
    if page.status_code == 200:
        assert page.context["page"].hits
    else:
        assert page.context["error"]
    assert data not in _BASES or page.status_code == 200  # an intact image is searched
    assert Image.objects.count() == len(library["all"])
    assert len(_files()) == 2 * len(library["all"])  # the query image is stored nowhere
