"""Writes to the gallery: create images, relabel them, rename labels, delete images.

Each service keeps the database and the media files consistent (a file is never left without
its row, nor a row without its file) and enqueues background work only after the transaction
commits (see docs/architecture.md, "Invariants").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.files.base import ContentFile
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone
from PIL import Image as PILImage

from search import dispatch

from . import formats
from .dates import TakenAt, taken_at_read
from .labels import InvalidLabels, clean_label_names
from .models import Image, Label
from .validation import InvalidImage, check_upload_size, validate_image_bytes

logger = logging.getLogger(__name__)


@dataclass
class ImageUpload:
    """One file to add: its client-side name (for messages only), size, a reader, its labels.

    An import from an export also carries the original upload time, uploader and date taken, and
    the image vector with the model that made it (the pipeline then skips the image model). ``refused``
    is set when the file was refused before reading (an archive entry named unsafely): it is
    reported with that reason and never read.
    """

    name: str
    size: int
    read: Callable[[], bytes]
    labels: Sequence[str]
    uploaded_at: datetime | None = None
    uploader: AbstractBaseUser | None = None
    image_vector: bytes | None = None
    embedding_model: str = ""
    refused: str | None = None
    taken: TakenAt | None = None  # an export's date taken; else the file's EXIF is read
    unlabelled: bool = False  # stored without labels when it has none (the library suggests some)


@dataclass
class ImportResult:
    added: list[int] = field(default_factory=list)
    duplicates: list[tuple[str, int]] = field(default_factory=list)  # (name, existing image id)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    queued: bool = True  # False when the broker could not be reached: embedding is delayed

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.duplicates)} skipped as duplicates"]
        parts.append(f"{len(self.refused)} refused")
        return ", ".join(parts)


def labels_get_or_create(*, names: Iterable[str]) -> list[Label]:
    """The labels with these names (ignoring case and spaces), created where missing."""
    labels = []
    for name in clean_label_names(names):
        label = Label.objects.named(name).first()
        if label is None:
            try:
                with transaction.atomic():
                    label = Label.objects.create(name=name)
            except IntegrityError:  # created by a concurrent upload a moment ago
                label = Label.objects.named(name).get()
        labels.append(label)
    return labels


def _uploader(user: AbstractBaseUser | AnonymousUser | None) -> AbstractBaseUser | None:
    return user if user is not None and user.is_authenticated else None


def images_create(
    *,
    uploads: Iterable[ImageUpload],
    uploaded_by: AbstractBaseUser | AnonymousUser | None = None,
    on_progress: Callable[[ImageUpload], None] | None = None,
) -> ImportResult:
    """Validate and store each upload; report what was added, skipped and refused.

    Each image is stored in its own transaction, so one bad file never loses the others. The
    same bytes are stored once: a second upload (even a concurrent one) is reported as a
    duplicate of the first. The new ids are enqueued for embedding after commit, a batch at a
    time as soon as a batch is stored (the worker embeds while the rest is still being stored);
    if the broker is down the images stay ``pending`` and the periodic sweep enqueues them later.
    """
    result = ImportResult()
    user = _uploader(uploaded_by)
    batch = settings.IMAGESEARCH_EMBED_BATCH_SIZE
    handed = 0  # result.added[:handed] are on their way to the queue

    def enqueue(ids: list[int]) -> None:
        if result.queued:  # after one failure, leave the rest to the sweep: no waiting per batch
            result.queued = dispatch.embedding_enqueue(image_ids=ids)

    def hand_over() -> None:
        nonlocal handed
        ids = result.added[handed:]
        handed = len(result.added)
        # Runs at once when no transaction is open, else when the caller's transaction commits.
        transaction.on_commit(lambda: enqueue(ids))

    for upload in uploads:
        try:
            _image_create_one(upload=upload, user=user, result=result)
        except OperationalError as exc:
            # A database lock held too long (SQLite's timeout) or a lost connection: this image
            # is not stored (its transaction rolled back, its files deleted); the others go on,
            # and the caller still gets the result and its batch.
            logger.warning("could not store %s", upload.name, exc_info=True)
            result.refused.append((upload.name or "upload", f"the database was busy ({exc}); send it again."))
        finally:
            if on_progress is not None:
                on_progress(upload)
        if len(result.added) - handed >= batch:
            hand_over()
    if len(result.added) > handed:
        hand_over()
    return result


def _image_create_one(*, upload: ImageUpload, user: AbstractBaseUser | None, result: ImportResult) -> None:
    name = upload.name or "upload"
    if upload.refused is not None:
        result.refused.append((name, upload.refused))
        return
    try:
        check_upload_size(upload.size)  # by the declared size, before reading the file
        label_names = clean_label_names(upload.labels)
        if not label_names and not upload.unlabelled:
            raise InvalidLabels("give at least one label.")
        validated = validate_image_bytes(upload.read())
    except (InvalidImage, InvalidLabels) as exc:
        result.refused.append((name, str(exc)))
        return
    existing = Image.objects.filter(sha256=validated.sha256).values_list("pk", flat=True).first()
    if existing is not None:
        result.duplicates.append((name, existing))
        return
    thumbnail = validated.thumbnail_jpeg()
    display = validated.display_jpeg()
    taken = upload.taken or validated.taken
    image = Image(
        sha256=validated.sha256,
        taken_at=taken.at if taken else None,
        taken_at_offset=taken.offset if taken else None,
        original_name=name[-255:],
        content_type=validated.content_type,
        uploaded_by=upload.uploader or user,
        image_vector=upload.image_vector,
        embedding_model=upload.embedding_model if upload.image_vector is not None else "",
    )
    saved: list[str] = []
    try:
        with transaction.atomic():
            image.file.save(f"upload.{validated.extension}", ContentFile(validated.data), save=False)
            saved.append(image.file.name)
            image.thumbnail.save("thumb.jpg", ContentFile(thumbnail), save=False)
            saved.append(image.thumbnail.name)
            if display is not None:
                image.display.save("display.jpg", ContentFile(display), save=False)
                saved.append(image.display.name)
            # width/height are the displayed (orientation-applied) size
            image.width, image.height = validated.width, validated.height
            image.save()
            if upload.uploaded_at is not None:  # auto_now_add sets "now" on insert
                Image.objects.filter(pk=image.pk).update(uploaded_at=upload.uploaded_at)
            image.labels.set(labels_get_or_create(names=label_names))
    except IntegrityError:
        _delete_files(saved)
        existing = Image.objects.filter(sha256=validated.sha256).values_list("pk", flat=True).first()
        if existing is None:
            raise
        result.duplicates.append((name, existing))
        return
    except BaseException:
        _delete_files(saved)
        raise
    result.added.append(image.pk)


def _delete_files(names: Iterable[str]) -> None:
    from django.core.files.storage import default_storage

    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete %s", name, exc_info=True)


def image_relabel(*, image: Image, names: Iterable[str]) -> Image:
    """Replace the image's labels; its hybrid is recomputed in the background from stored
    vectors (the image model does not run again)."""
    cleaned = clean_label_names(names)
    if not cleaned:
        raise InvalidLabels("An image needs at least one label.")
    with transaction.atomic():
        # The image's row is locked first: two relabels of one image at once run one after the
        # other, so the labels end as the last one set them. Without it, on PostgreSQL both read
        # the old set and each adds its own: the image ends with both (SQLite's IMMEDIATE
        # transactions serialise them anyway).
        Image.objects.select_for_update().filter(pk=image.pk).exists()
        image.labels.set(labels_get_or_create(names=cleaned))
        image_ids = [image.pk]
        _labels_changed(image_ids)
        transaction.on_commit(lambda: dispatch.hybrids_refresh_enqueue(image_ids=image_ids))
    return image


def label_rename(*, label: Label, name: str) -> Label:
    """Rename a label; its text vector and the hybrids of its images are recomputed."""
    cleaned = clean_label_names([name])
    if not cleaned:
        raise InvalidLabels("A label needs a name.")
    new_name = cleaned[0]
    clash = InvalidLabels(f"A label named {new_name!r} already exists.")
    if Label.objects.named(new_name).exclude(pk=label.pk).exists():
        raise clash
    with transaction.atomic():
        label.name = new_name
        label.vector = None
        label.vector_model = ""
        try:
            with transaction.atomic():  # a savepoint: the rename's own failure leaves the rest usable
                label.save(update_fields=["name", "vector", "vector_model"])
        except IntegrityError:
            # Another rename or upload took the name between the check above and this save.
            raise clash from None
        image_ids = list(label.images.values_list("pk", flat=True))
        _labels_changed(image_ids)
        if image_ids:
            transaction.on_commit(lambda: dispatch.hybrids_refresh_enqueue(image_ids=image_ids))
    return label


def label_delete(*, label: Label) -> None:
    """Delete a label; the images that carried it get their hybrids recomputed."""
    with transaction.atomic():
        image_ids = list(label.images.values_list("pk", flat=True))
        _labels_changed(image_ids)
        label.delete()
        if image_ids:
            transaction.on_commit(lambda: dispatch.hybrids_refresh_enqueue(image_ids=image_ids))


def _labels_changed(image_ids: Sequence[int]) -> None:
    # Their hybrids are stale from now on: the refresh is sent after commit, and should it be
    # lost (broker down), the sweep finds the rows by this stamp and sends it again.
    Image.objects.filter(pk__in=image_ids).update(labels_changed_at=timezone.now())


def images_delete(*, images: Iterable[Image]) -> int:
    """Delete images: rows first, then (after commit) their files; the index catches up.

    Search re-reads rows from the database, so a deleted image leaves the results at once,
    before the next index rebuild.
    """
    images = list(images)
    if not images:
        return 0
    files = [name for image in images for name in image.stored_files]
    with transaction.atomic():
        deleted = Image.objects.filter(pk__in=[i.pk for i in images]).delete()[1].get(Image._meta.label, 0)
        transaction.on_commit(lambda: _delete_files(files))
        transaction.on_commit(dispatch.index_rebuild_request)
    return deleted


def images_taken_at_backfill(*, limit: int = 10_000, batch: int = 200) -> tuple[int, bool]:
    """Read the date taken from the stored originals of up to ``limit`` images not read yet
    (uploaded before the library kept it), a batch of rows at a time. Returns how many were
    read and whether any are left. Run twice (or on two workers at once): a row is read until
    one run marks it read, both would store the same date, and a later run finds nothing."""
    formats.decoders_register()
    done = 0
    while True:
        if done >= limit:
            return done, Image.objects.filter(taken_at_read=False).exists()
        unread = Image.objects.filter(taken_at_read=False).order_by("pk").only("pk", "file")
        rows = list(unread[: min(batch, limit - done)])
        if not rows:
            return done, False
        for image in rows:
            taken = _taken_at_stored(image)
            Image.objects.filter(pk=image.pk, taken_at_read=False).update(
                taken_at=taken.at if taken else None,
                taken_at_offset=taken.offset if taken else None,
                taken_at_read=True,
            )
            done += 1


def _taken_at_stored(image: Image) -> TakenAt | None:
    try:
        with image.file.open("rb") as fh:
            return taken_at_read(PILImage.open(fh, formats=formats.pillow_names()))
    except Exception:  # noqa: BLE001 - a file gone or unreadable: marked read, with no date
        logger.warning("could not read the date taken of image %s", image.pk, exc_info=True)
        return None
