"""Bookkeeping for the background jobs (requests that coalesce, so that a burst makes one rebuild,
scan or labelling pass), the near-duplicate groups the worker finds (search.duplicates.scan), the
label suggestions, the cut-off's calibration (search.calibration), and the vectors pgvector searches
when it is the vector store."""

from __future__ import annotations

from typing import Self

from django.db import IntegrityError, models, transaction
from pgvector.django import HalfVectorField


def _the_row(model, **key):
    """The row of ``model`` with ``key``, created if missing, by whichever process comes first."""
    try:
        with transaction.atomic():
            row, _ = model.objects.get_or_create(**key)
    except IntegrityError:  # another process created it a moment ago
        row = model.objects.get(**key)
    return row


class _SingleRow(models.Model):
    """A table of one row (pk=1), shared by every process."""

    class Meta:
        abstract = True

    @classmethod
    def get(cls) -> Self:
        return _the_row(cls, pk=1)


class Job(models.Model):
    """One background job that runs at most one at a time and coalesces its requests (the index
    rebuild, the near-duplicate scan, the labelling pass): a row per job, keyed by ``name``.

    ``requested`` counts requests; ``queued`` is claimed with a conditional UPDATE so that at most
    one task of the job waits in the queue, however many requests arrive (search.jobs);
    ``done_request`` is the value of ``requested`` the last finished run saw. A job still queued
    well after ``due_at`` lost its message, and the next request or the sweep sends another.
    """

    name = models.CharField(max_length=20, primary_key=True)
    requested = models.PositiveBigIntegerField(default=0)
    done_request = models.PositiveBigIntegerField(default=0)
    queued = models.BooleanField(default=False)
    queued_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    # The running one (None when none runs) and its progress (steps done, of how many).
    running_since = models.DateTimeField(null=True, blank=True)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    # The last finished run: when, how long, and what it found (a job's own figures).
    finished_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.name} job"

    @property
    def behind_requests(self) -> bool:
        return self.requested > self.done_request


class _OneJob(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(name=self.model.JOB)


class _JobView(models.Model):
    """A job's own row as a model of its own (a proxy of Job): its admin entry, and the fields of
    its result by name."""

    JOB = ""
    objects = _OneJob()

    class Meta:
        abstract = True

    @classmethod
    def get(cls) -> Self:
        return _the_row(cls, name=cls.JOB)

    def _result(self, key: str, default=None):
        return self.result.get(key, default)


class IndexState(_JobView, Job):
    """The index rebuild (search.stores): ``finished_at`` and ``seconds`` are the last rebuild's."""

    JOB = "rebuild"

    class Meta:
        proxy = True
        verbose_name = "index status"
        verbose_name_plural = "index status"

    def __str__(self) -> str:
        return "index state"


class DuplicateScan(_JobView, Job):
    """The near-duplicate scan (search.duplicates.scan). ``number`` grows with every scan that
    wrote groups, so that a page showing groups of an older scan is told so; ``fingerprint`` is
    what the last scan read (ids, model, threshold): an unchanged library is not scanned again."""

    JOB = "duplicates"

    class Meta:
        proxy = True
        verbose_name = "near-duplicates"
        verbose_name_plural = "near-duplicates"

    def __str__(self) -> str:
        return "near-duplicate scan"

    number = property(lambda self: self._result("number", 0))
    images = property(lambda self: self._result("images", 0))
    threshold = property(lambda self: self._result("threshold"))
    model = property(lambda self: self._result("model", ""))
    fingerprint = property(lambda self: self._result("fingerprint", ""))


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
    HNSW index per dimension. Beside it the image vector alone (``picture``), with HNSW indexes of
    its own, for an emphasis on the picture (the images nearest by picture whose hybrids rank low).

    Derived from ``Image.hybrid_vector`` and ``Image.image_vector`` (still the source of truth;
    ``picture`` is null until the sweep backfills a row written before it existed). The table exists only on
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
    picture = HalfVectorField(null=True)
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "image vector"

    def __str__(self) -> str:
        return f"vector of image {self.image_id}"


class LabellingPass(_JobView, Job):
    """The labelling pass (search.labelling): its last result, and ``note``: why it suggested
    nothing (too few labelled images to calibrate on)."""

    JOB = "labelling"

    class Meta:
        proxy = True
        verbose_name = "label suggestions"
        verbose_name_plural = "label suggestions"

    def __str__(self) -> str:
        return "labelling pass"

    images = property(lambda self: self._result("images", 0))
    labels = property(lambda self: self._result("labels", 0))
    suggestions = property(lambda self: self._result("suggestions", 0))
    mislabels = property(lambda self: self._result("mislabels", 0))
    note = property(lambda self: self._result("note", ""))


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
