"""The date a photo was taken: read from EXIF (DateTimeOriginal, with OffsetTimeOriginal) at
upload in every format that carries it, empty when absent or nonsense; Newest orders by it,
falling back to the upload time, on both stores; the API returns it, the image's page shows it,
export and import keep it; images uploaded before it was kept get it once, in the background."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.core.management import call_command
from PIL import Image as PILImage

from gallery.dates import TakenAt, taken_at_parse
from gallery.exports import MANIFEST_NAME
from gallery.models import Image, Label
from gallery.services import images_create, images_taken_at_backfill
from search import dispatch, tasks
from search.ingest import pipeline, rebuild
from search.query import ranking
from search.query import vectors as query_vectors
from search.tasks import backfill_taken_at
from tests.factories import upload
from tests.support.images import make_image, phone_image_bytes

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _exif(date: str | None, offset: str | None = None) -> bytes:
    exif = PILImage.Exif()
    ifd = exif.get_ifd(0x8769)
    if date is not None:
        ifd[0x9003] = date
    if offset is not None:
        ifd[0x9011] = offset
    return exif.tobytes()


def _photo(seed: int, fmt: str, date: str | None, offset: str | None = None) -> bytes:
    if fmt in ("HEIF", "AVIF"):
        return phone_image_bytes(seed, fmt, exif=_exif(date, offset))
    out = io.BytesIO()
    make_image(seed).save(out, fmt, exif=_exif(date, offset))
    return out.getvalue()


def _create(*photos: tuple[bytes, str]) -> list[int]:
    result = images_create(uploads=[upload(data, [label], f"{label}.jpg") for data, label in photos])
    assert not result.refused, result.refused
    return result.added


# --- Reading EXIF --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "offset", "instant", "minutes"),
    [
        ("2021:06:05 14:03:02", "+02:00", datetime(2021, 6, 5, 12, 3, 2, tzinfo=UTC), 120),
        ("2021:06:05 14:03:02", "-05:30", datetime(2021, 6, 5, 19, 33, 2, tzinfo=UTC), -330),
        ("2021:06:05 14:03:02", None, datetime(2021, 6, 5, 14, 3, 2, tzinfo=UTC), None),
        (b"2021:06:05 14:03:02\x00", b"+00:00", datetime(2021, 6, 5, 14, 3, 2, tzinfo=UTC), 0),
        ("2021-06-05 14:03:02", None, datetime(2021, 6, 5, 14, 3, 2, tzinfo=UTC), None),
        # A bad offset alone is dropped; the date is still the camera's clock.
        ("2021:06:05 14:03:02", "+25:00", datetime(2021, 6, 5, 14, 3, 2, tzinfo=UTC), None),
        ("2021:06:05 14:03:02", "  :  ", datetime(2021, 6, 5, 14, 3, 2, tzinfo=UTC), None),
    ],
)
def test_exif_dates_are_read_with_their_offset(date, offset, instant, minutes):
    assert taken_at_parse(date, offset, now=NOW) == TakenAt(instant, minutes)


@pytest.mark.parametrize(
    "date",
    [
        None,
        "",
        "    :  :     :  :  ",  # what some cameras write when their clock was never set
        "0000:00:00 00:00:00",
        "2021:13:01 10:00:00",
        "2021:02:30 10:00:00",
        "2021:06:05 25:00:00",
        "1700:01:01 10:00:00",  # before photography
        "2031:01:01 10:00:00",  # years ahead of now
        "yesterday",
        "2021:06:05",
        12345,
    ],
)
def test_absent_or_nonsense_dates_are_ignored(date):
    assert taken_at_parse(date, "+01:00", now=NOW) is None


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG", "TIFF", "HEIF", "AVIF"])
def test_an_upload_keeps_the_date_its_exif_gives(fmt):
    [with_date, nonsense, without] = _create(
        (_photo(1, fmt, "2021:06:05 14:03:02", "+02:00"), "a"),
        (_photo(2, fmt, "0000:00:00 00:00:00", "+02:00"), "b"),
        (_photo(3, fmt, None), "c"),
    )
    image = Image.objects.get(pk=with_date)
    assert (image.taken_at, image.taken_at_offset) == (datetime(2021, 6, 5, 12, 3, 2, tzinfo=UTC), 120)
    assert image.taken_at_text == "5 Jun 2021, 14:03 (UTC+02:00)"
    assert Image.objects.get(pk=nonsense).taken_at is None
    assert Image.objects.get(pk=without).taken_at is None


# --- Newest, the API and the page ----------------------------------------------------------------


@pytest.fixture
def dated(db) -> dict[str, int]:
    """Uploaded in this order: 2024 (taken), undated (so: its upload, now), 2015 (taken)."""
    ids = _create(
        (_photo(1, "JPEG", "2024:01:01 09:00:00", "+00:00"), "sunset"),
        (_photo(2, "JPEG", None), "sunset"),
        (_photo(3, "JPEG", "2015:07:14 18:30:00"), "sunset"),
    )
    pipeline.images_embed(image_ids=ids)
    rebuild.index_rebuild()
    return dict(zip(["2024", "undated", "2015"], ids, strict=True))


@pytest.mark.usefixtures("vector_store")
def test_newest_orders_by_the_date_taken_and_else_the_upload_time(dated):
    newest = [dated["undated"], dated["2024"], dated["2015"]]
    assert [hit.image.pk for hit in ranking.images_browse().hits] == newest
    vector = query_vectors.query_vector_for_text(text="sunset")
    by_date = ranking.images_search(vector=vector, sort="date")
    assert [hit.image.pk for hit in by_date.hits] == newest
    assert list(Image.objects.newest_first().values_list("pk", flat=True)) == newest


@pytest.mark.usefixtures("vector_store")
def test_the_api_returns_the_date_taken_in_the_cameras_own_time(dated, client):
    results = client.get("/api/search", {"labels": ["sunset"], "k": 3}).json()["results"]
    taken = {r["id"]: r["taken_at"] for r in results}
    assert taken == {
        dated["undated"]: None,
        dated["2024"]: "2024-01-01T09:00:00Z",
        dated["2015"]: "2015-07-14T18:30:00",  # no offset recorded: none given
    }
    assert client.get(f"/api/images/{dated['2024']}").json()["taken_at"] == "2024-01-01T09:00:00Z"


def test_the_image_page_shows_the_date_taken(dated, client):
    page = client.get(f"/image/{dated['2015']}/").content.decode()
    assert '<time id="taken-at" datetime="2015-07-14T18:30:00">14 Jul 2015, 18:30</time>' in page
    assert 'id="taken-at"' not in client.get(f"/image/{dated['undated']}/").content.decode()


# --- Export and import ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_export_and_import_keep_the_date_taken(tmp_path, settings):
    _create(
        (_photo(1, "JPEG", "2021:06:05 14:03:02", "+02:00"), "a"),
        (_photo(2, "HEIF", "2019:01:02 03:04:05"), "b"),
        (_photo(3, "PNG", None), "c"),
    )
    before = dict(Image.objects.values_list("sha256", "taken_at"))
    target = tmp_path / "export"
    call_command("export_images", str(target), stdout=io.StringIO())
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    assert sorted(str(e["taken_at"]) for e in manifest["images"]) == [
        "2019-01-02T03:04:05",
        "2021-06-05T14:03:02+02:00",
        "None",
    ]
    # The export's date is what the import keeps (here edited by hand: not read from the file).
    [edited] = [e for e in manifest["images"] if e["taken_at"] == "2019-01-02T03:04:05"]
    edited["taken_at"] = "2018-03-04T05:06:07-07:00"
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    Image.objects.all().delete()
    Label.objects.all().delete()
    settings.MEDIA_ROOT = str(tmp_path / "restored")
    call_command("import_images", str(target), stdout=io.StringIO(), stderr=io.StringIO())
    after = {
        sha: (at, offset)
        for sha, at, offset in Image.objects.values_list("sha256", "taken_at", "taken_at_offset")
    }
    expected = {sha: (at, 120 if at and at.year == 2021 else None) for sha, at in before.items()}
    expected[edited["sha256"]] = (datetime(2018, 3, 4, 12, 6, 7, tzinfo=UTC), -420)
    assert after == expected


def test_an_export_with_a_date_that_is_no_date_is_refused_with_its_reason(tmp_path, db):
    _create((_photo(1, "JPEG", "2021:06:05 14:03:02"), "a"))
    target = tmp_path / "export"
    call_command("export_images", str(target), stdout=io.StringIO())
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    manifest["images"][0]["taken_at"] = "last summer"
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="taken_at: 'last summer' is not an ISO 8601 date"):
        call_command("import_images", str(target), stdout=io.StringIO(), stderr=io.StringIO())


# --- Images uploaded before the date was kept ----------------------------------------------------


def _as_before_the_date_was_kept(ids: list[int]) -> None:
    Image.objects.filter(pk__in=ids).update(taken_at=None, taken_at_offset=None, taken_at_read=False)


@pytest.mark.django_db
def test_older_images_get_their_date_from_their_stored_files_once(sent, django_capture_on_commit_callbacks):
    ids = _create(
        (_photo(1, "JPEG", "2021:06:05 14:03:02", "+02:00"), "a"),
        (_photo(2, "AVIF", "2020:02:02 02:02:02"), "b"),
        (_photo(3, "PNG", None), "c"),
    )
    _as_before_the_date_was_kept(ids)
    with django_capture_on_commit_callbacks(execute=True):
        assert backfill_taken_at() == 3
    taken = dict(Image.objects.values_list("pk", "taken_at"))
    assert taken == {
        ids[0]: datetime(2021, 6, 5, 12, 3, 2, tzinfo=UTC),
        ids[1]: datetime(2020, 2, 2, 2, 2, 2, tzinfo=UTC),
        ids[2]: None,
    }
    assert not Image.objects.filter(taken_at_read=False).exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert backfill_taken_at() == 0  # once: nothing left to read
    assert sent == []  # nothing left: it did not send itself again


@pytest.mark.django_db
def test_a_long_backfill_goes_on_in_further_runs(sent, monkeypatch, django_capture_on_commit_callbacks):
    ids = _create(*[(_photo(seed, "JPEG", f"20{10 + seed}:01:01 10:00:00"), "a") for seed in range(1, 6)])
    _as_before_the_date_was_kept(ids)
    assert images_taken_at_backfill(limit=2, batch=1) == (2, True)
    with django_capture_on_commit_callbacks(execute=True):
        assert backfill_taken_at() == 3  # the default limit takes the rest
    assert sent == []
    # A run that leaves rows unread sends itself again.
    _as_before_the_date_was_kept(ids)
    monkeypatch.setattr(tasks, "images_taken_at_backfill", lambda: images_taken_at_backfill(limit=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.backfill_taken_at() == 2
    assert [name for name, _ in sent] == [dispatch.TAKEN_AT_TASK]


@pytest.mark.django_db
def test_a_file_gone_is_marked_read_without_a_date():
    [pk] = _create((_photo(1, "JPEG", "2021:06:05 14:03:02"), "a"))
    _as_before_the_date_was_kept([pk])
    image = Image.objects.get(pk=pk)
    image.file.storage.delete(image.file.name)
    assert images_taken_at_backfill() == (1, False)
    image.refresh_from_db()
    assert (image.taken_at, image.taken_at_read) == (None, True)


def test_taken_at_round_trips_through_the_cameras_own_time():
    for taken in (TakenAt(NOW, 90), TakenAt(NOW, None), TakenAt(NOW, -600)):
        assert TakenAt.from_local(taken.local()) == taken
    assert TakenAt(NOW, 90).local().utcoffset() == timedelta(minutes=90)
    assert TakenAt(NOW, 90).local().tzinfo == timezone(timedelta(minutes=90))
