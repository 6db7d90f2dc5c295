"""Claims on the rows a run embeds (search.ingest.claims, Image.objects.claim) and how the sweep recovers
the work of runs that are gone: a dead process on this machine at once, a silent run on another
machine after the claim timeout, a live run never.

The messages the sweep sends are captured at ``search.dispatch._send`` (the broker's edge); the
worker-level proof, with a real SIGKILL, is in test_faults_worker_killed.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from gallery.models import Image
from gallery.services import image_relabel
from search import dispatch, jobs
from search.ingest import claims, pipeline, sweep
from tests.factories import create_images

# transaction=True: the sweep sends after commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def _sent_ids(sent: list[tuple[str, dict]], task: str) -> set[int]:
    return {pk for name, options in sent if name == task for pk in options["args"][0]}


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _hold(ids: list[int], owner: str, *, ago: float = 0.0) -> None:
    Image.objects.filter(pk__in=ids).update(
        claimed_by=owner, claimed_at=timezone.now() - timedelta(seconds=ago)
    )


def test_two_runs_never_hold_the_same_row(sent):
    ids = create_images([(1, ["sunset"]), (2, ["zebra"])])
    now = timezone.now()
    stale = claims.claim_stale_before(now)
    first = Image.objects.filter(pk__in=ids).claim(owner="a:1:x", now=now, stale_before=stale)
    second = Image.objects.filter(pk__in=ids).claim(owner="b:2:y", now=now, stale_before=stale)
    assert sorted(first) == sorted(ids) and second == []


def test_a_claim_not_renewed_within_the_timeout_can_be_taken_over(sent):
    [pk] = create_images([(1, ["sunset"])])
    _hold([pk], "elsewhere:1:x", ago=claims.CLAIM_TIMEOUT + 5)
    now = timezone.now()
    assert Image.objects.filter(pk=pk).claim(
        owner="me:2:y", now=now, stale_before=claims.claim_stale_before(now)
    ) == [pk]


def test_a_dead_process_on_this_machine_loses_its_claim_at_once_a_live_one_keeps_it():
    now = timezone.now()
    host = socket.gethostname()
    assert claims.claim_lost(f"{host}:{_dead_pid()}:nonce", now, now)
    assert not claims.claim_lost(f"{host}:{os.getppid()}:nonce", now, now)  # alive
    assert not claims.claim_lost(claims.claim_owner(), now, now)  # this very process
    assert not claims.claim_lost("another-machine:1:nonce", now, now)  # only the timeout tells
    assert claims.claim_lost("another-machine:1:nonce", now - timedelta(hours=1), now)


def test_a_killed_process_not_yet_reaped_loses_its_claim_at_once():
    # A killed worker's pool process stays a zombie until an init process reaps it (seconds, in
    # some containers); signal 0 still reaches it, yet it holds nothing.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        child.kill()
        while open(f"/proc/{child.pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
            pass  # not reaped by us until the end of the test: a zombie
        now = timezone.now()
        assert claims.claim_lost(f"{socket.gethostname()}:{child.pid}:nonce", now, now)
    finally:
        child.wait()


def test_the_sweep_frees_and_requeues_the_images_of_runs_that_are_gone_and_leaves_live_ones(sent):
    dead, remote, live = (create_images([(seed, ["kestrel"])])[0] for seed in (1, 2, 3))
    Image.objects.update(queued_at=timezone.now())  # just queued: the pending timeout is far off
    _hold([dead], f"{socket.gethostname()}:{_dead_pid()}:nonce")
    _hold([remote], "another-machine:1:nonce", ago=claims.CLAIM_TIMEOUT + 5)
    _hold([live], f"{socket.gethostname()}:{os.getppid()}:nonce")
    sent.clear()

    report = sweep.index_sweep()

    assert _sent_ids(sent, dispatch.EMBED_TASK) == {dead, remote}
    assert report["claims_freed"] == 2 and report["requeued"] == 2
    assert Image.objects.get(pk=live).claimed_by.endswith(":nonce")
    assert Image.objects.filter(pk__in=[dead, remote], claimed_by="").count() == 2


def test_at_a_workers_start_every_pending_image_no_live_run_holds_is_handed_over_again(sent):
    queued, held = (create_images([(seed, ["kestrel"])])[0] for seed in (1, 2))
    Image.objects.update(queued_at=timezone.now())
    _hold([held], f"{socket.gethostname()}:{os.getppid()}:nonce")
    sent.clear()
    assert sweep.index_sweep()["requeued"] == 0  # periodic: its message is still on its way
    assert sweep.index_sweep(at_start=True)["requeued"] == 1
    assert _sent_ids(sent, dispatch.EMBED_TASK) == {queued}


def test_a_run_of_the_pipeline_skips_rows_a_live_run_holds_and_takes_over_a_dead_runs(sent):
    live, dead = create_images([(1, ["sunset"]), (2, ["zebra"])])
    _hold([live], f"{socket.gethostname()}:{os.getppid()}:nonce")
    _hold([dead], f"{socket.gethostname()}:{_dead_pid()}:nonce")
    report = pipeline.images_embed(image_ids=[live, dead])
    assert (report.embedded, report.skipped) == (1, 1)
    assert Image.objects.get(pk=dead).status == Image.Status.READY
    assert Image.objects.get(pk=live).status == Image.Status.PENDING
    assert Image.objects.filter(claimed_by=claims.claim_owner()).count() == 0  # released


def test_a_relabel_whose_refresh_was_lost_is_refreshed_by_the_sweep(sent):
    [pk] = create_images([(1, ["sunset"])])
    pipeline.images_embed(image_ids=[pk])
    before = Image.objects.get(pk=pk).hybrid_vector
    image_relabel(image=Image.objects.get(pk=pk), names=["zebra"])
    sent.clear()  # the refresh message is lost (the broker was down)
    assert sweep.index_sweep()["hybrids_refreshed"] == 0  # within the grace: may still arrive
    ago = timezone.now() - timedelta(seconds=claims.CLAIM_TIMEOUT + 5)
    # As if the relabel happened a while ago, after the hybrid was made.
    Image.objects.filter(pk=pk).update(labels_changed_at=ago, hybrid_updated_at=ago - timedelta(seconds=1))
    assert sweep.index_sweep()["hybrids_refreshed"] == 1
    assert _sent_ids(sent, dispatch.REFRESH_TASK) == {pk}
    pipeline.hybrids_refresh(image_ids=[pk])  # as the worker does with that message
    assert Image.objects.get(pk=pk).hybrid_vector != before
    sent.clear()
    assert sweep.index_sweep()["hybrids_refreshed"] == 0  # up to date now


def test_a_rebuild_whose_message_was_lost_is_sent_again_soon_after_it_was_due(sent):
    from search.models import IndexState

    IndexState.get()
    dispatch.index_rebuild_request()
    assert [name for name, _ in sent].count(dispatch.REBUILD_TASK) == 1
    sent.clear()  # lost with the broker
    sweep.index_sweep()
    assert dispatch.REBUILD_TASK not in [name for name, _ in sent]  # not yet due
    overdue = timezone.now() - jobs.LOST_MESSAGE_AFTER - timedelta(seconds=5)
    IndexState.objects.update(due_at=overdue, queued_at=overdue)
    sweep.index_sweep()
    assert dispatch.REBUILD_TASK in [name for name, _ in sent]
