"""Who is embedding an image right now: claims on the rows, and telling a dead claim from a live one.

A run of the embedding pipeline claims the rows it is about to embed (``Image.claimed_by``, with a
conditional UPDATE, so two runs never embed one image) and renews the claim batch by batch. A
worker killed mid-batch leaves its claims behind; they count as lost when their owner process is
gone (on this machine: the owner names host and pid) or when they were not renewed for
``CLAIM_TIMEOUT`` seconds (any machine). The sweep hands lost claims' images to the
queue again (see docs/architecture.md, 'Recovery').
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta

from gallery.models import Image, ImageQuerySet

logger = logging.getLogger(__name__)

#: Seconds after which a run's unrenewed claim counts as lost (a run on another machine that died).
#: A run renews its claim every batch, seconds apart; the sweep then hands the images to the queue
#: again, and a label change's refresh is given this long to arrive before the sweep repeats it.
CLAIM_TIMEOUT = 30

_NONCE = uuid.uuid4().hex[:12]


def claim_owner() -> str:
    """This process's name on a claim: ``host:pid:nonce`` (the nonce tells a reused pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_NONCE}"


def claim_stale_before(now: datetime) -> datetime:
    return now - timedelta(seconds=CLAIM_TIMEOUT)


def claim_lost(owner: str, claimed_at: datetime | None, now: datetime) -> bool:
    """Whether a claim's run is gone: its process on this machine has died, or it was not renewed
    within the claim timeout."""
    if claimed_at is None or claimed_at < claim_stale_before(now):
        return True
    host, _, rest = owner.partition(":")
    pid_text, _, nonce = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine's run: only the timeout tells
    if (int(pid_text), nonce) == (os.getpid(), _NONCE):
        return False
    return not _process_alive(int(pid_text))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    # A killed worker's pool process is a zombie until an init process reaps it, which in a
    # container may take seconds: signal 0 still reaches a zombie, but it holds nothing.
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True  # no /proc (not Linux): signal 0 is all there is


def claims_free_lost(images: ImageQuerySet, *, now: datetime) -> list[int]:
    """Free the claims on these images whose run is gone; the ids freed."""
    held = images.pending().exclude(claimed_by="").values_list("pk", "claimed_by", "claimed_at")
    lost: dict[str, list[int]] = {}
    for pk, owner, claimed_at in held.iterator(chunk_size=2000):
        if claim_lost(owner, claimed_at, now):
            lost.setdefault(owner, []).append(pk)
    freed: list[int] = []
    for owner, ids in lost.items():
        # Only while that owner still holds them: a run that renewed meanwhile keeps its rows.
        Image.objects.filter(pk__in=ids).claims_release(owner=owner)
        freed += ids
    if freed:
        logger.info("freed %d images claimed by runs that are gone", len(freed))
    return freed
