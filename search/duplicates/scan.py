"""Near-duplicates: the same picture stored twice (resized, re-encoded, cropped a little).

The worker finds them (:func:`duplicates_scan`, task ``search.tasks.scan_duplicates``, requested
after every index rebuild through ``search.dispatch``): the k nearest neighbours of every ready
image's *image* vector (not the hybrid: labels must not make two pictures alike), in batches
(``search.stores.faiss.close_pairs``: exact, or approximate for a large library), the pairs at or above
``IMAGESEARCH_DUPLICATE_THRESHOLD``, joined into groups (connected components). The groups are
stored, replacing the previous scan's in one transaction; a page never computes them. Staff
resolve a group (:func:`group_resolve`): keep one image, delete the others through
``gallery.services.images_delete`` (rows, files and index stay consistent), optionally giving
the kept one every label of the group first.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Prefetch, QuerySet

from gallery import services as gallery_services
from gallery.models import Image

from .. import dispatch, encoder, jobs
from ..file_lock import Locked, file_lock
from ..models import DuplicateGroup, DuplicateMember, DuplicateScan
from ..stores import faiss as search_index
from ..stores.selection import vector_store

logger = logging.getLogger(__name__)

#: Neighbours searched per image. A picture saved more than this many times still ends in one
#: group: its copies reach one another through their own neighbours.
NEIGHBOURS = 16
#: Seconds between two writes of the scan's progress.
PROGRESS_INTERVAL = 1.0
#: Rows per query when ids are listed (below every database's limit on query parameters).
ID_CHUNK = 500


class DuplicateChoiceError(ValueError):
    """A staff choice on a group that cannot be carried out; the message says why, for a person."""


@dataclass
class ScanReport:
    scanned: bool
    reason: str = ""  # why nothing was scanned
    images: int = 0
    pairs: int = 0
    groups: int = 0
    seconds: float = 0.0
    read_seconds: float = 0.0
    search_seconds: float = 0.0  # of ``seconds``: the k-nearest-neighbour search alone


def _lock_dir() -> Path:
    return Path(settings.DATA_DIR) / "duplicates"


def _candidates(model: str) -> QuerySet[Image]:
    """Ready images with an image vector of the current model: what a scan compares."""
    return Image.objects.ready().filter(embedding_model=model, image_vector__isnull=False)


def _fingerprint(ids: np.ndarray, *, model: str, threshold: float) -> str:
    digest = hashlib.sha256(f"{model}\n{threshold!r}\n{NEIGHBOURS}\n".encode())
    digest.update(np.ascontiguousarray(ids, dtype="<i8").tobytes())
    return digest.hexdigest()


def duplicates_scan(*, force: bool = False) -> ScanReport:
    """Find the near-duplicate groups of the ready images and store them, unless another
    process is scanning (it backs off at once) or nothing changed since the last scan (the same
    images, model and threshold: an image's vector depends only on its bytes and the model).

    Progress (``DuplicateScan.done`` of ``total``) is written after every batch of queries.
    """
    started = time.monotonic()
    try:
        with file_lock(_lock_dir() / "LOCK", blocking=False):
            # New requests from here on schedule another scan.
            seen = jobs.take(DuplicateScan)
            state = DuplicateScan.get()
            model = encoder.model_name()
            threshold = settings.IMAGESEARCH_DUPLICATE_THRESHOLD
            ids_now = np.fromiter(
                _candidates(model).order_by("pk").values_list("pk", flat=True).iterator(), dtype=np.int64
            )
            unchanged = (
                state.number
                and not state.last_error
                and (state.fingerprint == _fingerprint(ids_now, model=model, threshold=threshold))
            )
            if unchanged and not force:
                jobs.served(DuplicateScan, seen)
                return ScanReport(
                    scanned=False, reason="nothing changed since the last scan", images=len(ids_now)
                )
            report = _scan(state=state, seen=seen, model=model, threshold=threshold, started=started)
    except Locked:
        logger.info("another process is scanning for near-duplicates; backing off")
        # That scan checks at its end whether requests arrived meanwhile.
        jobs.release(DuplicateScan)
        return ScanReport(scanned=False, reason="another scan is running")
    except Exception as exc:
        jobs.fail(DuplicateScan, exc)
        raise
    if jobs.requested_since(DuplicateScan, seen):
        dispatch.duplicates_scan_schedule()
    logger.info(
        "near-duplicates: %d groups among %d images in %.2fs (%.2fs searching neighbours)",
        report.groups,
        report.images,
        report.seconds,
        report.search_seconds,
    )
    return report


def _scan(*, state: DuplicateScan, seen: int, model: str, threshold: float, started: float) -> ScanReport:
    jobs.run_started(DuplicateScan)
    ids, vectors = vector_store().image_vectors(_candidates(model).order_by("pk"), model=model)
    read_seconds = time.monotonic() - started
    DuplicateScan.objects.update(total=len(ids))

    last_written = [time.monotonic()]

    def progress(done: int, total: int) -> None:
        # A write per second at most: each is a commit, and the page polls once a second anyway.
        now = time.monotonic()
        if now - last_written[0] >= PROGRESS_INTERVAL or done == total:
            DuplicateScan.objects.update(done=done, total=total)
            last_written[0] = now

    searching = time.monotonic()
    first, second, score = search_index.close_pairs(
        vectors, k=NEIGHBOURS, threshold=threshold, on_batch=progress
    )
    search_seconds = time.monotonic() - searching
    del vectors
    groups = connected_groups(ids, first, second, score)
    try:
        written = _groups_write(groups, number=state.number + 1)
    except IntegrityError:
        # An image of a group was deleted while the groups were written: its deletion asks for
        # another scan, which sees the rows as they are.
        dispatch.duplicates_scan_request()
        raise
    seconds = time.monotonic() - started
    jobs.finish(
        DuplicateScan,
        seen=seen,
        seconds=seconds,
        result={
            "number": state.number + 1,
            "images": len(ids),
            "threshold": threshold,
            "model": model,
            "fingerprint": _fingerprint(ids, model=model, threshold=threshold),
        },
    )
    return ScanReport(
        scanned=True,
        images=len(ids),
        pairs=len(first),
        groups=written,
        seconds=seconds,
        read_seconds=read_seconds,
        search_seconds=search_seconds,
    )


@dataclass
class FoundGroup:
    members: dict[int, float] = field(default_factory=dict)  # image id -> best cosine to another member
    top: float = -1.0
    least: float = 2.0


def connected_groups(
    ids: np.ndarray, first: np.ndarray, second: np.ndarray, score: np.ndarray
) -> list[FoundGroup]:
    """The connected components of the close pairs (row positions into ``ids``), best first.

    Components, not cliques: a copy of a copy joins its original's group even when the two
    are a little below the threshold from each other, which is what a person expects of
    "the same picture"; with a high threshold chains stay short.
    """
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(first.tolist(), second.tolist(), strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, FoundGroup] = {}
    for a, b, s in zip(first.tolist(), second.tolist(), score.tolist(), strict=True):
        group = groups.setdefault(root(a), FoundGroup())
        for position in (a, b):
            image_id = int(ids[position])
            group.members[image_id] = max(s, group.members.get(image_id, -1.0))
        group.top, group.least = max(group.top, s), min(group.least, s)
    return sorted(groups.values(), key=lambda g: (-g.top, min(g.members)))


def _groups_write(groups: Sequence[FoundGroup], *, number: int) -> int:
    """Replace every stored group with ``groups`` in one transaction; returns how many were
    written (images deleted since they were read are left out, and groups left with one)."""
    wanted = [image_id for group in groups for image_id in group.members]
    with transaction.atomic():
        existing: set[int] = set()
        for start in range(0, len(wanted), ID_CHUNK):
            existing.update(
                Image.objects.filter(pk__in=wanted[start : start + ID_CHUNK]).values_list("pk", flat=True)
            )
        DuplicateGroup.objects.all().delete()
        kept = [g for g in groups if sum(image_id in existing for image_id in g.members) >= 2]
        rows = DuplicateGroup.objects.bulk_create(
            [DuplicateGroup(scan=number, top_similarity=g.top, least_similarity=g.least) for g in kept],
            batch_size=ID_CHUNK,
        )
        DuplicateMember.objects.bulk_create(
            [
                DuplicateMember(group=row, image_id=image_id, similarity=similarity)
                for row, group in zip(rows, kept, strict=True)
                for image_id, similarity in group.members.items()
                if image_id in existing
            ],
            batch_size=ID_CHUNK,
        )
    return len(kept)


# --- Reading the groups (the admin page and the API) -------------------------------------------


def groups_listed() -> QuerySet[DuplicateGroup]:
    """Stored groups that still have two images or more (a deleted image leaves its group),
    best first, with their members and those members' images and labels prefetched."""
    members = DuplicateMember.objects.select_related("image").prefetch_related("image__labels")
    members = members.defer(*(f"image__{name}" for name in ("image_vector", "hybrid_vector")))
    return (
        DuplicateGroup.objects.annotate(size=Count("members"))
        .filter(size__gte=2)
        .order_by("-top_similarity", "id")
        .prefetch_related(Prefetch("members", queryset=members))
    )


def file_bytes(image: Image) -> int | None:
    """The stored file's size; None when the file is missing (the page still shows the rest)."""
    try:
        return image.file.size
    except OSError:
        return None


def scan_summary() -> dict[str, Any]:
    """The scan's state as plain JSON-able values: running or not, progress, the last result."""
    state = DuplicateScan.get()
    running = state.running_since is not None
    return {
        "running": running,
        "done": state.done if running else 0,
        "total": state.total if running else 0,
        "queued": state.queued,
        "number": state.number,
        "finished_at": state.finished_at.isoformat() if state.finished_at else None,
        "seconds": state.seconds,
        "images": state.images,
        "threshold": state.threshold,
        "setting": settings.IMAGESEARCH_DUPLICATE_THRESHOLD,
        "model": state.model,
        "groups": groups_listed().count(),
        "last_error": state.last_error,
    }


# --- Staff choices ------------------------------------------------------------------------------


@dataclass
class Resolution:
    kept: int
    deleted: list[int]
    already_deleted: list[int]
    labels: list[str]  # the kept image's labels afterwards

    def message(self) -> str:
        text = f"Kept image {self.kept}; deleted {len(self.deleted)} near-duplicate(s)."
        if self.already_deleted:
            gone = ", ".join(str(i) for i in self.already_deleted)
            text += f" Already deleted before: {gone}."
        return text + f" Its labels: {', '.join(self.labels)}."


def group_resolve(*, group_id: int, keep: int, shown: Iterable[int], merge_labels: bool) -> Resolution:
    """Keep image ``keep`` of the group and delete the other images of it that the person saw
    (``shown``), through the gallery's delete service; with ``merge_labels`` the kept image
    first gets every label of those images. All or nothing, in one transaction.

    A group a newer scan replaced is still resolved when the newer scan found the same images;
    refused, with nothing changed: one whose images changed, an image to keep that is not in the
    group or was deleted meanwhile. Images already deleted by someone else are reported.
    """
    shown_ids = sorted({int(i) for i in shown} | {int(keep)})
    with transaction.atomic():
        group = DuplicateGroup.objects.select_for_update().filter(pk=group_id).first()
        if group is None:
            # A newer scan (after any upload) replaced the groups. The person saw exactly the
            # group that holds ``keep`` now if it has the same images (less those deleted since).
            group = DuplicateGroup.objects.select_for_update().filter(members__image_id=keep).first()
            still_there = set(Image.objects.filter(pk__in=shown_ids).values_list("pk", flat=True))
            if group is None or set(group.members.values_list("image_id", flat=True)) != still_there:
                raise DuplicateChoiceError(
                    "This group is out of date: the near-duplicates were found again since the page"
                    " was shown, and its images changed. Nothing was changed; look at the group again."
                )
        members = set(group.members.values_list("image_id", flat=True))
        if keep not in members:
            if not Image.objects.filter(pk=keep).exists():
                raise DuplicateChoiceError(
                    f"Image {keep}, the one chosen to keep, has been deleted meanwhile. Nothing was changed."
                )
            raise DuplicateChoiceError(f"Image {keep} is not in this group. Nothing was changed.")
        strangers = [i for i in shown_ids if i not in members and Image.objects.filter(pk=i).exists()]
        if strangers:
            raise DuplicateChoiceError(
                f"Image(s) {', '.join(map(str, strangers))} are not in this group. Nothing was changed."
            )
        already = [i for i in shown_ids if i not in members]
        doomed = list(Image.objects.filter(pk__in=[i for i in shown_ids if i in members and i != keep]))
        kept = Image.objects.get(pk=keep)
        if merge_labels:
            names = {name: None for image in [kept, *doomed] for name in image.label_names}
            gallery_services.image_relabel(image=kept, names=list(names))
        gallery_services.images_delete(images=doomed)
        group.delete()
    return Resolution(
        kept=keep,
        deleted=sorted(image.pk for image in doomed),
        already_deleted=already,
        labels=kept.label_names,
    )
