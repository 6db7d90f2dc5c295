"""Images and their labels: the source of truth that every index generation is derived from."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce, Lower

from . import formats
from .dates import TakenAt
from .labels import MAX_LABEL_LENGTH, normalize_label_name

# Names an original of a stored extension may carry as uploaded.
_EXTENSION_ALIASES = {"jpg": {"jpg", "jpeg"}, "tiff": {"tif", "tiff"}, "heic": {"heic", "heif"}}

# When a picture was made, as Newest orders them: taken, or else uploaded.
SORTED_AT = Coalesce("taken_at", "uploaded_at")

# Blobs that a page never shows: deferred wherever rows are read for display.
VECTOR_FIELDS = ("image_vector", "hybrid_vector")

# What a search result reads of its row: what pages and API answers show of a hit, and the image
# vector and hybrid weight the explanation of its score needs (search.query.row_vectors). The
# stores re-read their hits with these fields only (search.stores.result_rows).
RESULT_FIELDS = (
    "id",
    "file",
    "thumbnail",
    "display",
    "original_name",
    "content_type",
    "width",
    "height",
    "uploaded_at",
    "taken_at",
    "taken_at_offset",
    "status",
    "failure_reason",
    "image_vector",
    "hybrid_weight",
)


class LabelQuerySet(models.QuerySet["Label"]):
    def named(self, name: str) -> LabelQuerySet:
        """Labels equal to ``name`` ignoring case and surrounding spaces."""
        return self.filter(name__iexact=normalize_label_name(name))

    def named_any(self, names: Iterable[str]) -> LabelQuerySet:
        """Labels equal to any of ``names`` ignoring case and surrounding spaces."""
        found = Q(pk__in=[])
        for name in names:
            found |= Q(name__iexact=normalize_label_name(name))
        return self.filter(found)

    def vectors_outdated(self, model_name: str) -> LabelQuerySet:
        """Labels behind a stored hybrid whose text vector was made by another model than
        ``model_name`` (the text model was switched): those hybrids are due for a refresh."""
        return (
            self.filter(vector__isnull=False, images__hybrid_vector__isnull=False)
            .exclude(vector_model=model_name)
            .distinct()
        )


class Label(models.Model):
    name = models.CharField(max_length=MAX_LABEL_LENGTH)
    # The text vector is cached per label (computed once, reused by every image that carries it).
    vector = models.BinaryField(null=True, blank=True, editable=False)
    vector_model = models.CharField(max_length=500, blank=True, editable=False)

    objects = LabelQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="gallery_label_name_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.name

    def has_vector_for(self, model_name: str) -> bool:
        return self.vector is not None and self.vector_model == model_name


class ImageQuerySet(models.QuerySet["Image"]):
    def pending(self) -> ImageQuerySet:
        return self.filter(status=Image.Status.PENDING)

    def ready(self) -> ImageQuerySet:
        return self.filter(status=Image.Status.READY)

    def failed(self) -> ImageQuerySet:
        return self.filter(status=Image.Status.FAILED)

    def searchable(self, model_name: str) -> ImageQuerySet:
        """Ready images whose hybrid vector was made by ``model_name``: what the index holds."""
        return self.ready().filter(embedding_model=model_name, hybrid_vector__isnull=False)

    def stale(self, model_name: str) -> ImageQuerySet:
        """Images whose image vector is missing or was made by another model."""
        return self.filter(models.Q(image_vector__isnull=True) | ~models.Q(embedding_model=model_name))

    def claim(self, *, owner: str, now: datetime, stale_before: datetime) -> list[int]:
        """Claim the pending rows of this queryset for the run ``owner``: those no run holds, or
        whose claim was last renewed before ``stale_before``. One conditional UPDATE, so two runs
        never hold one row. Returns the ids ``owner`` holds now."""
        self.pending().filter(models.Q(claimed_by="") | models.Q(claimed_at__lt=stale_before)).update(
            claimed_by=owner, claimed_at=now
        )
        return list(self.filter(claimed_by=owner).values_list("pk", flat=True))

    def claims_release(self, *, owner: str) -> int:
        return self.filter(claimed_by=owner).update(claimed_by="", claimed_at=None)

    def hybrids_stale(self, *, changed_before: datetime) -> ImageQuerySet:
        """Images whose labels changed (before ``changed_before``) after their hybrid was made."""
        return self.filter(labels_changed_at__lt=changed_before).filter(
            models.Q(hybrid_updated_at__isnull=True)
            | models.Q(hybrid_updated_at__lt=models.F("labels_changed_at"))
        )

    def newest_first(self) -> ImageQuerySet:
        """Newest first by the date taken, the upload time where there is none (Newest)."""
        return self.order_by(SORTED_AT.desc(), "-pk")

    def without_vectors(self) -> ImageQuerySet:
        return self.defer(*VECTOR_FIELDS)

    def for_display(self) -> ImageQuerySet:
        """Rows as pages and API answers show them: labels prefetched, vectors left unread."""
        return self.without_vectors().prefetch_related("labels")


def _image_path(instance: Image, filename: str) -> str:
    # Generated names only: the client's path never reaches the file system.
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"images/{instance.sha256[:2]}/{instance.sha256}.{ext}"


def _thumbnail_path(instance: Image, filename: str) -> str:
    return f"thumbnails/{instance.sha256[:2]}/{instance.sha256}.jpg"


def _display_path(instance: Image, filename: str) -> str:
    return f"display/{instance.sha256[:2]}/{instance.sha256}.jpg"


class Image(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    file = models.FileField(upload_to=_image_path)
    thumbnail = models.FileField(upload_to=_thumbnail_path, blank=True)
    # A JPEG copy for an original not every browser shows (HEIC, AVIF, TIFF); empty when the
    # original is shown as it is. Pages show display_url; the original stays for download.
    display = models.FileField(upload_to=_display_path, blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=50)
    sha256 = models.CharField(max_length=64, unique=True, editable=False)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    labels = models.ManyToManyField(Label, related_name="images")
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    uploaded_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # When the photo was taken (EXIF, gallery.dates): the instant in UTC, and the camera's offset
    # in minutes east of UTC; with no offset known, taken_at is the camera's wall time read as
    # UTC. taken_at_read: False until the original was read for it (rows older than the field,
    # read once in the background).
    taken_at = models.DateTimeField(null=True, blank=True)
    taken_at_offset = models.SmallIntegerField(null=True, blank=True)
    taken_at_read = models.BooleanField(default=True)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    failure_reason = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(auto_now_add=True)
    # When the image was last handed to the broker; NULL while it never was (broker down).
    queued_at = models.DateTimeField(null=True, blank=True)
    # The run embedding it now ("host:pid:nonce") and when it claimed the row or last renewed
    # the claim; empty while no run holds it (see ImageQuerySet.claim and search.ingest.claims).
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    # When its labels last changed (relabel, a label renamed or deleted): a hybrid older than this
    # is stale, and the sweep refreshes it if the refresh that was sent got lost.
    labels_changed_at = models.DateTimeField(null=True, blank=True)

    # The image vector (L2-normalised float32) and the model that made it.
    image_vector = models.BinaryField(null=True, blank=True, editable=False)
    embedding_model = models.CharField(max_length=500, blank=True, db_index=True)
    # The hybrid is derived from the image vector and the label vectors with this weight.
    hybrid_vector = models.BinaryField(null=True, blank=True, editable=False)
    hybrid_weight = models.FloatField(null=True, blank=True)
    hybrid_updated_at = models.DateTimeField(null=True, blank=True, db_index=True)

    objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["-uploaded_at", "-id"]
        indexes = [models.Index(SORTED_AT.desc(), models.F("id").desc(), name="gallery_image_newest")]

    def __str__(self) -> str:
        return self.original_name or f"image {self.pk}"

    @property
    def taken(self) -> TakenAt | None:
        return None if self.taken_at is None else TakenAt(self.taken_at, self.taken_at_offset)

    @property
    def sorted_at(self) -> datetime:
        """The time Newest orders by: taken, or else uploaded."""
        return self.taken_at or self.uploaded_at

    @property
    def taken_at_text(self) -> str:
        """ "5 Jun 2021, 14:03 (UTC+02:00)" in the camera's own time; no zone when it gave none."""
        taken = self.taken
        if taken is None:
            return ""
        local = taken.local()
        text = f"{local.day} {local:%b %Y, %H:%M}"
        if taken.offset is None:
            return text
        sign, minutes = ("+" if taken.offset >= 0 else "-"), abs(taken.offset)
        return f"{text} (UTC{sign}{minutes // 60:02d}:{minutes % 60:02d})"

    @property
    def display_url(self) -> str:
        """The full-size picture as pages show it: the display copy, or the original."""
        return self.display.url if self.display else self.file.url

    @property
    def download_name(self) -> str:
        """A file name for the original: the uploaded name (folders dropped) when it ends in
        the stored extension, else one made from the id."""
        ext = self.file.name.rsplit(".", 1)[-1].lower() if "." in self.file.name else "bin"
        name = self.original_name.replace("\\", "/").rsplit("/", 1)[-1]
        if name.lower().rsplit(".", 1)[-1] in _EXTENSION_ALIASES.get(ext, {ext}):
            return name
        return f"image-{self.pk}.{ext}"

    @property
    def format_name(self) -> str:
        """The original's format as people call it (HEIC, AVIF, ...)."""
        found = next((f for f in formats.accepted() if f.content_type == self.content_type), None)
        return found.name if found else self.content_type

    @property
    def stored_files(self) -> list[str]:
        """The names of every media file this image owns."""
        return [f.name for f in (self.file, self.thumbnail, self.display) if f.name]

    @property
    def label_names(self) -> list[str]:
        # Names loaded for a page of results (label_names_load), or prefetched labels read as
        # they are: labels.all() builds a new queryset per call.
        loaded = self.__dict__.get("_label_names")
        if loaded is not None:
            return loaded
        prefetched = getattr(self, "_prefetched_objects_cache", {}).get("labels")
        labels = prefetched if prefetched is not None else self.labels.all()
        return [label.name for label in labels]

    @staticmethod
    def label_names_load(images: list[Image]) -> None:
        """Load the label names of ``images`` in one query (for ``label_names``): a page of
        search results shows only the names, and prefetching Label objects cost several times
        more (BENCHMARKS.md)."""
        names: dict[int, list[str]] = {image.pk: [] for image in images}
        links = Image.labels.through.objects.filter(image_id__in=list(names)).order_by("label__name")
        for image_id, name in links.values_list("image_id", "label__name"):
            names[image_id].append(name)
        for image in images:
            image.__dict__["_label_names"] = names[image.pk]
