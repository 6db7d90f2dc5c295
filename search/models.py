"""Bookkeeping for the index: rebuild requests, so that bursts coalesce into one rebuild."""

from __future__ import annotations

from django.db import IntegrityError, models, transaction


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
