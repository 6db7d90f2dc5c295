"""search.dispatch: sends by task name, only once the open transaction commits, and says when the
broker could not take the work (the sweep hands it over later)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gallery.models import Image
from search import dispatch, tasks
from search.models import IndexState
from tests.factories import create_images


def test_the_task_names_are_those_the_worker_registers():
    registered = [tasks.embed_images, tasks.refresh_hybrids, tasks.rebuild_index, tasks.sweep]
    names = [dispatch.EMBED_TASK, dispatch.REFRESH_TASK, dispatch.REBUILD_TASK, dispatch.SWEEP_TASK]
    assert names == [task.name for task in registered]


def test_importing_the_tasks_loads_neither_the_model_nor_the_index_library():
    code = (
        "import sys, django; django.setup(); import search.tasks; "
        "bad = [m for m in ('torch', 'faiss', 'sentence_transformers') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "imagesearch.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
def test_inside_a_transaction_nothing_is_sent_before_the_commit(sent, django_capture_on_commit_callbacks):
    ids = create_images([(1, ["sunset"]), (2, ["zebra"])])
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.embedding_enqueue(image_ids=ids)  # on its way
        dispatch.index_rebuild_request()
        assert sent == []
    assert [name for name, _ in sent] == [dispatch.EMBED_TASK, dispatch.REBUILD_TASK]
    assert Image.objects.filter(pk__in=ids, queued_at__isnull=False).count() == 2


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_it_is_sent_at_once_and_a_broker_down_is_reported(sent, monkeypatch):
    ids = create_images([(1, ["sunset"])])
    IndexState.get()
    sent.clear()  # the upload's own hand-over
    assert dispatch.embedding_enqueue(image_ids=ids)
    assert sent == [(dispatch.EMBED_TASK, {"args": [ids]})]

    def broker_down(name, **options):
        raise ConnectionError("no broker")

    monkeypatch.setattr(dispatch, "_send", broker_down)
    Image.objects.filter(pk__in=ids).update(queued_at=None)
    assert not dispatch.embedding_enqueue(image_ids=ids)
    assert Image.objects.get(pk=ids[0]).queued_at is None  # left for the sweep
    assert not dispatch.hybrids_refresh_enqueue(image_ids=ids)
    assert not dispatch.index_rebuild_schedule()
    assert not IndexState.get().queued  # the claim is released for the sweep
