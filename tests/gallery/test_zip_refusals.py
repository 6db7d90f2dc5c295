"""Zip entries that cannot be imported as they are named are refused with a reason, never
skipped in silence: names that climb out with ``..``, absolute names, symbolic links, and names
that appear twice in one archive. The same through ``import_images``, the upload page and the API.
Hidden files and macOS metadata are still left out quietly (they are not images anyone chose)."""

from __future__ import annotations

import io
import stat
import warnings
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from gallery.models import Image
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db

CLIMBS = "the name climbs out of the archive with '..'."
ABSOLUTE = "an absolute name; entries of an archive must be relative."
SYMLINK = "a symbolic link; only files are imported."
TWICE = "the archive holds 2 entries of this name; which one is meant cannot be known."

REFUSED = [
    ("../evil.png", CLIMBS),
    ("sub/..\\..\\evil2.png", CLIMBS),
    ("/abs/evil3.png", ABSOLUTE),
    ("C:/windows/evil4.png", ABSOLUTE),
    ("link.png", SYMLINK),
    ("dup.png", TWICE),
    ("dup.png", TWICE),
]


def hostile_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name
        archive.writestr("good/ok.png", image_bytes(1))
        archive.writestr(".hidden.png", image_bytes(2))
        archive.writestr("__MACOSX/good/._ok.png", b"metadata")
        for seed, name in enumerate(["../evil.png", "sub/..\\..\\evil2.png", "/abs/evil3.png"], start=3):
            archive.writestr(name, image_bytes(seed))
        archive.writestr("C:/windows/evil4.png", image_bytes(6))
        link = zipfile.ZipInfo("link.png")
        link.create_system = 3  # Unix
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("dup.png", image_bytes(7))
        archive.writestr("dup.png", image_bytes(8))
    return out.getvalue()


def _stored() -> list[str]:
    return sorted(Image.objects.values_list("original_name", flat=True))


def _media_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_import_images_lists_every_refused_entry_with_its_reason(tmp_path):
    path = tmp_path / "hostile.zip"
    path.write_bytes(hostile_zip())
    out = io.StringIO()
    call_command("import_images", str(path), "--label", "x", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert "1 added, 0 skipped as duplicates, 7 refused." in text
    for name, reason in REFUSED:
        assert f"  refused {name}: {reason}" in text
    assert _stored() == ["ok.png"]
    assert len(_media_files()) == 2  # the image and its thumbnail
    assert not Path("/abs").exists() and not (tmp_path.parent / "evil.png").exists()


def test_the_upload_page_lists_refused_entries(staff_client):
    response = staff_client.post(
        "/admin/gallery/image/upload/",
        {"archive": SimpleUploadedFile("hostile.zip", hostile_zip()), "labels": "x"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    for name, reason in REFUSED:
        assert name.replace("'", "&#x27;") in html or name in html
        assert reason.replace("'", "&#x27;") in html
    assert _stored() == ["ok.png"]


def test_the_api_lists_refused_entries(staff_client):
    response = staff_client.post(
        "/api/images",
        {"archive": SimpleUploadedFile("hostile.zip", hostile_zip(), "application/zip"), "labels": "x"},
    )
    assert response.status_code == 201, response.content
    refused = [(r["name"], r["reason"]) for r in response.json()["refused"]]
    assert sorted(refused) == sorted(REFUSED)
    assert _stored() == ["ok.png"]


def test_an_archive_of_only_refused_entries_adds_nothing_and_says_why(staff_client):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("../../escape.png", image_bytes(9))
    response = staff_client.post(
        "/api/images",
        {"archive": SimpleUploadedFile("bad.zip", out.getvalue(), "application/zip"), "labels": "x"},
    )
    assert response.status_code == 400
    assert f"../../escape.png: {CLIMBS}" in response.json()["error"]
    assert Image.objects.count() == 0 and _media_files() == []


def test_an_archive_declaring_too_many_entries_is_refused_before_its_directory_is_parsed(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("one.png", image_bytes(1))
    data = bytearray(out.getvalue())
    end = data.rindex(b"PK\x05\x06")
    data[end + 8 : end + 12] = (30_000).to_bytes(2, "little") * 2  # entries on disk, entries total
    path = tmp_path / "many.zip"
    path.write_bytes(bytes(data))
    err = io.StringIO()
    with pytest.raises(Exception, match="holds 30000 files; the limit is 20000"):
        call_command("import_images", str(path), "--label", "x", stdout=io.StringIO(), stderr=err)
    assert Image.objects.count() == 0
