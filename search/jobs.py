"""The lifecycle every background job shares (search.models.Job: the index rebuild, the
near-duplicate scan, the labelling pass), one set of functions for all three.

A request counts (:func:`request`); search.dispatch then claims the job's queue slot
(:func:`claim`, a conditional UPDATE, so at most one task of the job waits in the queue) and sends
the task, releasing the slot if the broker refuses it (:func:`release`). The task takes the slot
back at once (:func:`take`: requests from then on queue another run), runs
(:func:`run_started`), and records what it saw (:func:`finish`, or :func:`fail`); a run that
finds another one holding its lock backs off (:func:`release`). A run asks for one more when
requests arrived meanwhile (:func:`requested_since`). A slot still claimed ``LOST_MESSAGE_AFTER``
past its due time lost its message (a broker restart): the next claim takes it again, so the next
request or the sweep (:func:`waiting_unsent`) sends another.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import F, Q
from django.utils import timezone

from .models import DuplicateScan, IndexState, LabellingPass

#: A job still queued this long past its due time lost its message. Longer than a busy worker's
#: usual lateness.
LOST_MESSAGE_AFTER = timedelta(seconds=30)

JobModel = type[IndexState] | type[DuplicateScan] | type[LabellingPass]


def request(job: JobModel) -> None:
    """One more request for ``job``."""
    job.get()
    job.objects.update(requested=F("requested") + 1)


def claim(job: JobModel, *, countdown: float) -> bool:
    """Claim the job's queue slot for a task due in ``countdown`` seconds: True when none was
    queued, or the queued one lost its message; False when one is waiting (it sees the requests
    counted before it runs)."""
    now = timezone.now()
    free = Q(queued=False) | Q(due_at__lt=now - LOST_MESSAGE_AFTER)
    return bool(
        job.objects.filter(free).update(queued=True, queued_at=now, due_at=now + timedelta(seconds=countdown))
    )


def release(job: JobModel) -> None:
    """Free the queue slot: the send failed, or a run backs off because another holds the lock
    (that one checks at its end whether requests arrived while it ran)."""
    job.objects.update(queued=False)


def take(job: JobModel) -> int:
    """A run begins: frees the queue slot, so that requests from here on queue another run, and
    returns the requests it serves."""
    seen = job.get().requested
    release(job)
    return seen


def run_started(job: JobModel) -> None:
    job.objects.update(running_since=timezone.now(), done=0, total=0, last_error="")


def served(job: JobModel, seen: int) -> None:
    """The requests up to ``seen`` need no run (nothing changed since the last one)."""
    job.objects.update(done_request=seen)


def finish(job: JobModel, *, seen: int, seconds: float, result: dict[str, Any] | None = None) -> None:
    """The run that took the requests up to ``seen`` finished; ``result``: its own figures."""
    fields: dict[str, Any] = {"result": result} if result is not None else {}
    job.objects.update(
        done_request=seen,
        running_since=None,
        finished_at=timezone.now(),
        seconds=seconds,
        last_error="",
        **fields,
    )


def fail(job: JobModel, exc: BaseException) -> None:
    job.objects.update(running_since=None, last_error=f"{type(exc).__name__}: {exc}")


def requested_since(job: JobModel, seen: int) -> bool:
    """Whether requests arrived after the run that took those up to ``seen`` began."""
    return job.objects.filter(requested__gt=seen).exists()


def waiting_unsent(job: JobModel) -> bool:
    """Requests that no run serves, none queued and none running: asked while the broker was
    down, or the claim was released. The sweep sends them."""
    return job.objects.filter(
        queued=False, running_since__isnull=True, requested__gt=F("done_request")
    ).exists()


def last_seconds(job: JobModel) -> float:
    """How long the job's last finished run took (0 before any)."""
    return job.objects.values_list("seconds", flat=True).first() or 0.0
