"""When the labelling pass runs: requested after embedding and after label changes, coalesced (one
waits in the queue however many requests come), spaced by ten times the last pass's duration (so a
long ingest spends at most a tenth of the worker's time on it), and sent again by the sweep when
its message was lost."""

from __future__ import annotations

import pytest
from celery import current_app

from search import dispatch, tasks
from search.ingest import sweep
from search.models import LabellingPass
from tests.factories import create_images

pytestmark = pytest.mark.django_db


def _passes_sent(sent) -> list[dict]:
    return [options for name, options in sent if name == dispatch.LABELLING_TASK]


def test_a_burst_of_requests_queues_one_pass_spaced_by_ten_times_the_last(
    sent, django_capture_on_commit_callbacks
):
    LabellingPass.get()
    LabellingPass.objects.update(seconds=3.0)
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            dispatch.labelling_request()
    [options] = _passes_sent(sent)
    assert options["countdown"] == pytest.approx(30.0)
    assert LabellingPass.get().requested == 5


def test_embedding_and_label_changes_request_a_pass(sent, django_capture_on_commit_callbacks):
    [pk] = create_images([(1, ["kestrel"])])
    with django_capture_on_commit_callbacks(execute=True):
        current_app.tasks["search.tasks.embed_images"](image_ids=[pk])
    assert len(_passes_sent(sent)) == 1
    LabellingPass.objects.update(queued=False)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.refresh_hybrids(image_ids=[pk])
    assert len(_passes_sent(sent)) == 2


def test_the_sweep_sends_a_pass_requested_while_the_broker_was_down(sent, django_capture_on_commit_callbacks):
    LabellingPass.get()
    LabellingPass.objects.update(requested=1)  # counted, never sent
    with django_capture_on_commit_callbacks(execute=True):
        sweep.index_sweep()
    assert len(_passes_sent(sent)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        sweep.index_sweep()
    assert len(_passes_sent(sent)) == 1  # queued now: not sent twice


def test_the_pass_run_by_its_task_records_what_it_saw(sent, django_capture_on_commit_callbacks):
    LabellingPass.get()
    LabellingPass.objects.update(requested=3, queued=True)
    report = tasks.suggest_labels()
    state = LabellingPass.get()
    assert report["ran"] and (state.done_request, state.queued) == (3, False)
    assert state.finished_at is not None and "Too few labelled images" in state.note
