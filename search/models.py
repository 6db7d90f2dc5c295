"""Bookkeeping for the index (rebuild requests, so that bursts coalesce into one rebuild), the
near-duplicate groups the worker finds (search.duplicates.scan), the label suggestions, the cut-off's
calibration (search.calibration), and the vectors pgvector searches when it is the vector store."""

from __future__ import annotations

from typing import Self

from django.db import IntegrityError, models, transaction
from pgvector.django import HalfVectorField


class _SingleRow(models.Model):
    """A table of one row (pk=1), shared by every process."""

    class Meta:
        abstract = True

    @classmethod
    def get(cls) -> Self:
        try:
            with transaction.atomic():
                state, _ = cls.objects.get_or_create(pk=1)
        except IntegrityError:  # another process created it a moment ago
            state = cls.objects.get(pk=1)
        return state


class IndexState(_SingleRow):
    """A single row (pk=1).

    ``requested`` counts rebuild requests; ``rebuild_queued`` is claimed with a conditional
    UPDATE so that at most one rebuild task waits in the queue at any time, however many
    requests arrive. ``built_request`` is the value of ``requested`` the last rebuild saw.
    """

    requested = models.PositiveBigIntegerField(default=0)
    built_request = models.PositiveBigIntegerField(default=0)
    rebuild_queued = models.BooleanField(default=False)
    queued_at = models.DateTimeField(null=True, blank=True)
    # When the queued rebuild is due to run (queued_at + its countdown): a rebuild still queued
    # well after that was lost with its message, and the sweep sends another.
    rebuild_due_at = models.DateTimeField(null=True, blank=True)
    last_rebuild_at = models.DateTimeField(null=True, blank=True)
    last_rebuild_seconds = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name = "index status"
        verbose_name_plural = "index status"

    def __str__(self) -> str:
        return "index state"

    @property
    def behind_requests(self) -> bool:
        return self.requested > self.built_request


class DuplicateScan(_SingleRow):
    """A single row (pk=1): the near-duplicate scan's requests, progress and last result.

    Requests coalesce as the index rebuild's do: ``requested`` counts them, ``scan_queued`` is
    claimed with a conditional UPDATE so that at most one scan waits in the queue, and
    ``scanned_request`` is the value of ``requested`` the last scan saw. ``number`` grows with
    every scan that wrote groups, so that a page showing groups of an older scan is told so.
    """

    requested = models.PositiveBigIntegerField(default=0)
    scanned_request = models.PositiveBigIntegerField(default=0)
    scan_queued = models.BooleanField(default=False)
    queued_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    # Progress of the running scan (images whose neighbours were searched, of how many).
    running_since = models.DateTimeField(null=True, blank=True)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    # The last finished scan.
    number = models.PositiveBigIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    images = models.PositiveIntegerField(default=0)
    threshold = models.FloatField(null=True, blank=True)
    model = models.CharField(max_length=500, blank=True)
    # What the last scan read (ids, model, threshold): an unchanged library is not scanned again.
    fingerprint = models.CharField(max_length=64, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name = "near-duplicates"
        verbose_name_plural = "near-duplicates"

    def __str__(self) -> str:
        return "near-duplicate scan"

    @property
    def behind_requests(self) -> bool:
        return self.requested > self.scanned_request


class DuplicateGroup(models.Model):
    """Images whose image vectors are at or above the threshold from one another, directly or
    through other members (connected components), as the scan numbered ``scan`` found them."""

    scan = models.PositiveBigIntegerField(db_index=True)
    # The highest and lowest cosine of the pairs that joined the group.
    top_similarity = models.FloatField()
    least_similarity = models.FloatField()

    class Meta:
        ordering = ["-top_similarity", "id"]

    def __str__(self) -> str:
        return f"near-duplicate group {self.pk}"


class DuplicateMember(models.Model):
    group = models.ForeignKey(DuplicateGroup, on_delete=models.CASCADE, related_name="members")
    # A deleted image leaves its groups at once (the rows go with it).
    image = models.ForeignKey("gallery.Image", on_delete=models.CASCADE, related_name="+")
    # Its highest cosine to another member.
    similarity = models.FloatField()

    class Meta:
        ordering = ["-similarity", "image_id"]
        constraints = [
            models.UniqueConstraint(fields=["group", "image"], name="search_duplicate_member_once"),
        ]

    def __str__(self) -> str:
        return f"image {self.image_id} in group {self.group_id}"


class ImageVector(models.Model):
    """An image's hybrid vector where pgvector is the vector store (``IMAGESEARCH_VECTOR_BACKEND=
    pgvector``, search.stores.pgvector): written with the row when it becomes ready, searched by an
    HNSW index per dimension.

    Derived from ``Image.hybrid_vector`` (still the source of truth). The table exists only on
    PostgreSQL with the vector extension (search/migrations/0007): a SQLite deployment never
    creates or reads it. The database deletes a row with its image (``ON DELETE CASCADE``,
    added by the same migration), so Django's deletion never looks at this table.
    """

    image = models.OneToOneField(
        "gallery.Image",
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    model = models.CharField(max_length=500)
    # An HNSW index needs one dimension: each dimension has its own partial index (search.stores.pgvector).
    dimension = models.PositiveSmallIntegerField()
    embedding = HalfVectorField()
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "image vector"

    def __str__(self) -> str:
        return f"vector of image {self.image_id}"


class LabellingPass(_SingleRow):
    """A single row (pk=1): the labelling pass's requests and its last result (search.labelling).

    Requests coalesce as the near-duplicate scan's do: ``requested`` counts them (after embedding
    and after label changes), ``queued`` is claimed with a conditional UPDATE so that at most one
    pass waits in the queue, and ``done_request`` is the value of ``requested`` the last pass saw.
    """

    requested = models.PositiveBigIntegerField(default=0)
    done_request = models.PositiveBigIntegerField(default=0)
    queued = models.BooleanField(default=False)
    queued_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    running_since = models.DateTimeField(null=True, blank=True)
    # The last finished pass.
    finished_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    images = models.PositiveIntegerField(default=0)
    labels = models.PositiveIntegerField(default=0)
    suggestions = models.PositiveIntegerField(default=0)
    mislabels = models.PositiveIntegerField(default=0)
    # Why it suggested nothing (too few labelled images to calibrate on), or its last error.
    note = models.TextField(blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name = "label suggestions"
        verbose_name_plural = "label suggestions"

    def __str__(self) -> str:
        return "labelling pass"


class LabelSuggestion(models.Model):
    """A label the library has, proposed for an image that does not carry it, with the calibrated
    chance that it is right. A rejected one is kept (``rejected``), so that no later pass proposes
    it for that image again; the others are replaced by every pass."""

    image = models.ForeignKey("gallery.Image", on_delete=models.CASCADE, related_name="label_suggestions")
    label = models.ForeignKey("gallery.Label", on_delete=models.CASCADE, related_name="+")
    confidence = models.FloatField()
    rejected = models.BooleanField(default=False)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["-confidence", "id"]
        constraints = [
            models.UniqueConstraint(fields=["image", "label"], name="search_label_suggestion_once"),
        ]
        indexes = [models.Index(fields=["rejected", "-confidence"], name="search_suggestion_open")]

    def __str__(self) -> str:
        return f"{self.label_id} for image {self.image_id} ({self.confidence:.2f})"


class Mislabel(models.Model):
    """A labelled image far from its label's other images (by that label's own spread), with the
    label that fits it better, as the last labelling pass found it. One staff kept as it is
    (``kept``) stays, so that no later pass lists that image with that label again."""

    image = models.ForeignKey("gallery.Image", on_delete=models.CASCADE, related_name="+")
    label = models.ForeignKey("gallery.Label", on_delete=models.CASCADE, related_name="+")
    better = models.ForeignKey("gallery.Label", on_delete=models.CASCADE, related_name="+")
    # How many of its label's spreads below the label's median picture similarity it lies.
    spreads = models.FloatField()
    better_confidence = models.FloatField()
    computed_at = models.DateTimeField()
    kept = models.BooleanField(default=False)

    class Meta:
        ordering = ["-spreads", "id"]
        constraints = [models.UniqueConstraint(fields=["image", "label"], name="search_mislabel_once")]

    def __str__(self) -> str:
        return f"image {self.image_id}: {self.label_id} -> {self.better_id}"


class Calibration(_SingleRow):
    """A single row (pk=1): the last calibration of the cut-off (search.calibration), made by the
    worker after a rebuild that served requests. ``curves`` holds, per kind of query (``text``,
    ``image``), the pooled precision at about a hundred scores (``[score, precision, results]``,
    highest score first); empty, with ``note`` saying why, when the library had too few labelled
    images. A failed calibration keeps the last curves and records ``last_error``."""

    calibrated_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    image_model = models.CharField(max_length=500, blank=True)
    text_model = models.CharField(max_length=500, blank=True)
    library = models.PositiveIntegerField(default=0)  # searchable images the sample was drawn from
    sample = models.PositiveIntegerField(default=0)  # images scored by every query
    labels = models.PositiveIntegerField(default=0)  # labels that served as queries
    eligible_labels = models.PositiveIntegerField(default=0)  # labels with enough images in the sample
    text_queries = models.PositiveIntegerField(default=0)
    image_queries = models.PositiveIntegerField(default=0)
    curves = models.JSONField(default=dict)
    note = models.TextField(blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name = "cut-off calibration"
        verbose_name_plural = "cut-off calibration"

    def __str__(self) -> str:
        return "cut-off calibration"
