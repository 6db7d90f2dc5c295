"""The date a photo was taken: EXIF ``DateTimeOriginal``, with ``OffsetTimeOriginal`` when the
camera wrote one. Read at upload, and once, in the background, from the stored files of images
uploaded before the library kept it (gallery.services.images_taken_at_backfill).

A camera without an offset records its own clock's wall time, in no known zone: such a date is
kept as that wall time read as UTC, with no offset (``taken_at_offset`` NULL), and shown without
a zone. A date that is absent, unparsable or nonsense (before photography, or in the future) is
kept empty: Newest then falls back to the upload time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from django.utils import timezone as django_timezone
from PIL import Image as PILImage

_EXIF_IFD = 0x8769
_DATE_TIME_ORIGINAL = 0x9003
_OFFSET_TIME_ORIGINAL = 0x9011
_EARLIEST = datetime(1826, 1, 1, tzinfo=UTC)  # the oldest surviving photograph
_FUTURE_SLACK = timedelta(days=1)  # a camera clock a little ahead is not nonsense
_DATE = re.compile(r"(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")


@dataclass(frozen=True)
class TakenAt:
    at: datetime  # aware, UTC: the instant, or (offset None) the camera's wall time read as UTC
    offset: int | None  # minutes east of UTC; None: the camera gave none

    def local(self) -> datetime:
        """The camera's wall time: aware in its offset when known, naive when not."""
        if self.offset is None:
            return self.at.replace(tzinfo=None)
        return self.at.astimezone(timezone(timedelta(minutes=self.offset)))

    @classmethod
    def from_local(cls, value: datetime) -> TakenAt:
        """The reverse of :meth:`local` (an export's ISO text, parsed)."""
        if value.tzinfo is None:
            return cls(value.replace(tzinfo=UTC), None)
        offset = value.utcoffset()
        return cls(value.astimezone(UTC), int(offset.total_seconds() // 60) if offset is not None else None)


def taken_at_parse(
    date_text: object, offset_text: object = None, *, now: datetime | None = None
) -> TakenAt | None:
    """EXIF's ``"2021:06:05 14:03:02"`` (and ``"+02:00"``) as a :class:`TakenAt`, or None when
    absent or nonsense. A bad offset alone is dropped: the date is still the camera's clock."""
    if isinstance(date_text, bytes):
        date_text = date_text.decode("ascii", "replace")
    if not isinstance(date_text, str):
        return None
    match = _DATE.fullmatch(date_text.strip(" \x00"))
    if match is None:
        return None
    try:
        wall = datetime(*(int(part) for part in match.groups()))  # type: ignore[misc]
    except ValueError:  # month 13, 31 February, "0000:00:00 00:00:00"
        return None
    offset = _offset_minutes(offset_text)
    at = wall.replace(tzinfo=UTC) - timedelta(minutes=offset or 0)
    now = now or django_timezone.now()
    if not _EARLIEST <= at <= now + _FUTURE_SLACK:
        return None
    return TakenAt(at, offset)


def _offset_minutes(text: object) -> int | None:
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not isinstance(text, str):
        return None
    match = _OFFSET.fullmatch(text.strip(" \x00"))
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    total = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or total > 14 * 60:  # UTC-12:00 to UTC+14:00 are the zones there are
        return None
    return -total if sign == "-" else total


def taken_at_read(image: PILImage.Image) -> TakenAt | None:
    """The date ``image`` (opened by Pillow, any format with EXIF) says it was taken, or None.
    A broken EXIF block is no date, never an error."""
    try:
        exif = image.getexif()
        ifd = exif.get_ifd(_EXIF_IFD)
        # Some writers put the tags in the first IFD instead of the Exif IFD.
        date_text = ifd.get(_DATE_TIME_ORIGINAL, exif.get(_DATE_TIME_ORIGINAL))
        offset_text = ifd.get(_OFFSET_TIME_ORIGINAL, exif.get(_OFFSET_TIME_ORIGINAL))
    except Exception:  # noqa: BLE001 - EXIF parsing raises many kinds of errors on bad data
        return None
    return taken_at_parse(date_text, offset_text)
