"""Bookkeeping for the index (rebuild requests, so that bursts coalesce into one rebuild), and
the vectors pgvector searches when it is the vector store."""

from __future__ import annotations

from django.db import IntegrityError, models, transaction
from pgvector.django import HalfVectorField


class IndexState(models.Model):
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

    @classmethod
    def get(cls) -> IndexState:
        try:
            with transaction.atomic():
                state, _ = cls.objects.get_or_create(pk=1)
        except IntegrityError:  # another process created it a moment ago
            state = cls.objects.get(pk=1)
        return state

    @property
    def behind_requests(self) -> bool:
        return self.requested > self.built_request


class ImageVector(models.Model):
    """An image's hybrid vector where pgvector is the vector store (``IMAGESEARCH_VECTOR_BACKEND=
    pgvector``, search.vectorstore): written with the row when it becomes ready, searched by an
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
    # An HNSW index needs one dimension: each dimension has its own partial index (search.vectorstore).
    dimension = models.PositiveSmallIntegerField()
    embedding = HalfVectorField()
    updated_at = models.DateTimeField()

    class Meta:
        verbose_name = "image vector"

    def __str__(self) -> str:
        return f"vector of image {self.image_id}"
