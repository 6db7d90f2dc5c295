"""An archive entry that cannot be read (a bad CRC, encrypted, a compression method zipfile lacks)
is refused with its reason; the other entries are stored and the caller gets its result and its
batch. The same for ``import_images``. A database error on one image refuses that image only."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import OperationalError

from gallery import services
from gallery.models import Image
from tests.factories import upload
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db


def _patched_zip(*, flag_bits: int = 0, method: int | None = None, corrupt: bool = False) -> bytes:
    """good.png, then bad.png made unreadable in one way, then after.png."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("good.png", image_bytes(1))
        archive.writestr("bad.png", image_bytes(2))
        archive.writestr("after.png", image_bytes(3))
    data = bytearray(out.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("bad.png")
    local = info.header_offset
    central = next(
        i
        for i in range(len(data))
        if data[i : i + 4] == b"PK\x01\x02" and data[i + 46 : i + 53] == b"bad.png"
    )
    if flag_bits:
        for at in (local + 6, central + 8):
            struct.pack_into("<H", data, at, struct.unpack_from("<H", data, at)[0] | flag_bits)
    if method is not None:
        struct.pack_into("<H", data, local + 8, method)
        struct.pack_into("<H", data, central + 10, method)
    if corrupt:
        start = local + 30 + len("bad.png")
        data[start + 100] ^= 0xFF
    return bytes(data)


UNREADABLE = {
    "bad-crc": (lambda: _patched_zip(corrupt=True), "the entry is damaged in the archive"),
    "encrypted": (lambda: _patched_zip(flag_bits=0x1), "the entry cannot be read from the archive"),
    "deflate64": (lambda: _patched_zip(method=9), "the entry is compressed in a way this server cannot"),
    "aes": (lambda: _patched_zip(method=99), "the entry is compressed in a way this server cannot"),
}


@pytest.mark.parametrize("case", UNREADABLE, ids=str)
def test_an_unreadable_entry_is_refused_and_the_others_are_stored(case, staff_client):
    make, reason = UNREADABLE[case]
    response = staff_client.post(
        "/api/images",
        {"archive": SimpleUploadedFile("a.zip", make(), "application/zip"), "labels": "x"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    [(name, why)] = [(r["name"], r["reason"]) for r in body["refused"]]
    assert name == "bad.png" and reason in why
    assert body["batch"]
    assert sorted(Image.objects.values_list("original_name", flat=True)) == ["after.png", "good.png"]


@pytest.mark.parametrize("case", UNREADABLE, ids=str)
def test_import_images_refuses_an_unreadable_entry_and_imports_the_rest(case, tmp_path):
    make, reason = UNREADABLE[case]
    path = tmp_path / "a.zip"
    path.write_bytes(make())
    out = io.StringIO()
    call_command("import_images", str(path), "--label", "x", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert "2 added, 0 skipped as duplicates, 1 refused." in text
    assert f"refused bad.png: {reason}" in text


def test_a_database_error_on_one_image_refuses_that_image_and_stores_the_others(monkeypatch):
    real_save = Image.save

    def save(self, *args, **kwargs):
        if self.original_name == "locked.png":
            raise OperationalError("database is locked")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image, "save", save)
    result = services.images_create(
        uploads=[
            upload(image_bytes(4), ["x"], "first.png"),
            upload(image_bytes(5), ["x"], "locked.png"),
            upload(image_bytes(6), ["x"], "last.png"),
        ]
    )
    assert len(result.added) == 2
    [(name, reason)] = result.refused
    assert name == "locked.png" and "the database was busy" in reason
    assert sorted(Image.objects.values_list("original_name", flat=True)) == ["first.png", "last.png"]
