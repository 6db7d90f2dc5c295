"""HEIC (pillow-heif) and AVIF (Pillow's own plugin), as phones save them: taken by the API, the
admin upload page and ``import_images``; the original kept byte for byte and offered for
download; the pages shown a JPEG display copy; embedded and found on both vector stores. The
accepted formats come from gallery.formats alone, which every page, the API and the README follow."""

from __future__ import annotations

import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from PIL import Image as PILImage

from api.tokens import api_token_create
from gallery import formats
from gallery.models import Image
from gallery.validation import InvalidImage, validate_image_bytes
from search.ingest import pipeline, rebuild
from tests.factories import create_indexed_images
from tests.support.constants import ROOT, UPLOAD_URL
from tests.support.images import image_bytes, phone_image_bytes

PHONE = [("HEIF", "IMG_0042.HEIC", "image/heic", "heic"), ("AVIF", "PXL_0042.avif", "image/avif", "avif")]


@pytest.fixture
def api(staff_user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=staff_user, name='tests')[1]}")


def _opened(client: Client, url: str) -> PILImage.Image:
    response = client.get(url)
    assert response.status_code == 200, url
    return PILImage.open(io.BytesIO(b"".join(response.streaming_content)))


@pytest.mark.django_db
@pytest.mark.usefixtures("vector_store")
@pytest.mark.parametrize(("fmt", "name", "content_type", "ext"), PHONE)
def test_a_phone_photo_uploaded_by_the_api_is_embedded_and_found_by_its_label_and_itself(
    api, client, fmt, name, content_type, ext
):
    create_indexed_images([(seed, [label]) for seed, label in [(1, "bicycle"), (2, "sunset"), (3, "zebra")]])
    data = phone_image_bytes(60, fmt, size=(160, 120))
    response = api.post("/api/images", {"files": [SimpleUploadedFile(name, data)], "labels": "harbour"})
    assert response.status_code == 201, response.content
    [pk] = response.json()["added"]
    pipeline.images_embed(image_ids=[pk])
    rebuild.index_rebuild()

    found = client.get("/api/search", {"text": "harbour", "k": 4}).json()["results"][0]
    assert (found["id"], found["labels"], found["content_type"]) == (pk, ["harbour"], content_type)
    assert found["image_url"].endswith(f".{ext}")
    assert found["display_url"].startswith("http://testserver/media/display/")
    like_it = client.get("/api/search", {"image_id": pk, "k": 4}).json()["results"]
    assert pk not in [r["id"] for r in like_it] and len(like_it) == 3
    # As a query image it is refused with the formats a query may be in: browsers send those.
    as_query = client.post("/api/search", {"image": SimpleUploadedFile(name, data), "k": 1})
    assert as_query.status_code == 400
    assert formats.description(formats.for_queries()) in as_query.json()["error"]


@pytest.mark.django_db
@pytest.mark.parametrize(("fmt", "name", "content_type", "ext"), PHONE)
def test_the_original_is_kept_as_uploaded_and_the_pages_show_a_jpeg_copy(
    staff_client, fmt, name, content_type, ext
):
    data = phone_image_bytes(61, fmt, size=(120, 90))
    response = staff_client.post(UPLOAD_URL, {"files": [SimpleUploadedFile(name, data)], "labels": "kestrel"})
    assert "1 added" in response.content.decode()
    image = Image.objects.get()
    assert (image.content_type, image.width, image.height) == (content_type, 120, 90)
    original = staff_client.get(image.file.url)
    assert original["Content-Type"] == content_type
    assert b"".join(original.streaming_content) == data  # byte for byte
    display = _opened(staff_client, image.display_url)
    assert (display.format, display.size) == ("JPEG", (120, 90))
    assert _opened(staff_client, image.thumbnail.url).format == "JPEG"

    pipeline.images_embed(image_ids=[image.pk])
    rebuild.index_rebuild()
    page = staff_client.get(f"/image/{image.pk}/").content.decode()
    assert f'<img src="{image.display_url}"' in page
    download = re.search(r'<a [^>]*id="download-original"[^>]*>', page).group(0)
    assert f'href="{image.file.url}"' in download
    assert f'download="{name}"' in download


@pytest.mark.django_db
def test_import_images_takes_heic_and_avif_and_checks_their_real_format(tmp_path):
    folder = tmp_path / "phone"
    folder.mkdir()
    (folder / "a.heic").write_bytes(phone_image_bytes(62, "HEIF"))
    (folder / "b.avif").write_bytes(phone_image_bytes(63, "AVIF"))
    (folder / "c.heic").write_bytes(image_bytes(64, "PNG"))  # a PNG whatever its name says
    (folder / "d.heic").write_bytes(phone_image_bytes(65, "HEIF", size=(200, 150))[:300])
    out, err = io.StringIO(), io.StringIO()
    call_command("import_images", str(folder), "--label", "phone", stdout=out, stderr=err)
    stored = dict(Image.objects.values_list("original_name", "content_type"))
    assert stored == {"a.heic": "image/heic", "b.avif": "image/avif", "c.heic": "image/png"}
    assert "d.heic" in out.getvalue() + err.getvalue()
    assert Image.objects.get(original_name="c.heic").display.name == ""


def test_a_damaged_heic_is_refused_with_a_reason():
    with pytest.raises(InvalidImage, match="damaged or truncated"):
        validate_image_bytes(phone_image_bytes(66, "HEIF", size=(200, 150))[:-200])


@pytest.mark.django_db
def test_the_upload_page_search_box_api_and_readme_name_the_formats_of_one_list(staff_client, client):
    queries = formats.for_queries()
    described = formats.description()
    assert "HEIC" in described and "AVIF" in described
    upload_page = staff_client.get(UPLOAD_URL).content.decode()
    assert f'<span id="accepted-formats">{described}</span>' in upload_page
    assert formats.file_input_accept() in upload_page  # the picker's accept attribute
    search_page = client.get("/").content.decode()
    picker = re.search(r'<input id="image"[^>]*>', search_page).group(0)
    assert f'accept="{formats.file_input_accept(queries)}"' in picker
    assert f'data-formats="{formats.description(queries)}"' in picker
    assert formats.description(queries) == "JPEG, PNG, WebP or GIF"
    openapi = client.get("/api/openapi.json").json()
    assert described in openapi["paths"]["/api/images"]["post"]["description"]
    assert f"Accepted: {described}" in (ROOT / "README.md").read_text()
    # The search box's script keeps no list of its own: it reads the picker's attribute.
    script = (ROOT / "static/js/search.js").read_text().lower()
    assert not re.search(r"tiff|heic|avif|bmp", script)


def test_avif_is_neither_accepted_nor_listed_where_pillow_lacks_it(monkeypatch):
    from PIL import features

    real = features.check
    monkeypatch.setattr(features, "check", lambda name: False if name == "avif" else real(name))
    formats.accepted.cache_clear()
    try:
        assert "AVIF" not in formats.description() and ".avif" not in formats.file_input_accept()
        with pytest.raises(InvalidImage, match="use JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC"):
            validate_image_bytes(phone_image_bytes(67, "AVIF"))
    finally:
        monkeypatch.undo()
        formats.accepted.cache_clear()
    assert "AVIF" in formats.description()
