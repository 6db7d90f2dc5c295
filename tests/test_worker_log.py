"""The worker's log: the periodic sweep shows only when it did something (imagesearch.task_logs).

The records go through Celery's own logging calls (beat's, the worker's receipt, the task
tracer's success), as a worker makes them.
"""

from __future__ import annotations

import logging

import pytest
from celery import beat
from celery.app import trace
from celery.worker import strategy

from imagesearch import task_logs

IDLE = {"requeued": 0, "claims_freed": 0, "rebuild_scheduled": 0}


@pytest.fixture(autouse=True)
def _filters_installed():
    task_logs.install()


def _run_logged(name: str, result: dict[str, int], *, kwargs: str = "{}") -> None:
    """The three lines Celery logs for one run of task ``name``."""
    beat.info("Scheduler: Sending due task %s (%s)", name.rsplit(".", 1)[-1], name)
    context = {"id": "abc", "name": name, "args": "()", "kwargs": kwargs, "eta": None}
    strategy.logger.info(trace.LOG_RECEIVED, context, extra={"data": context})  # as strategy's info
    trace.info(
        trace.LOG_SUCCESS,
        {
            "id": "abc",
            "name": name,
            "return_value": repr(result),
            "runtime": 0.01,
            "args": "()",
            "kwargs": kwargs,
        },
    )


def test_a_sweep_that_found_nothing_leaves_no_line(caplog):
    caplog.set_level(logging.INFO)
    _run_logged("search.tasks.sweep", IDLE)
    assert not [r for r in caplog.records if "sweep" in r.getMessage()]


def test_a_sweep_that_did_something_is_logged_with_its_result(caplog):
    caplog.set_level(logging.INFO)
    _run_logged("search.tasks.sweep", {**IDLE, "requeued": 3})
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "search.tasks.sweep[abc] succeeded" in messages[0] and "'requeued': 3" in messages[0]


def test_other_tasks_keep_their_three_lines(caplog):
    caplog.set_level(logging.INFO)
    _run_logged("search.tasks.embed_images", IDLE)
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split("]")[-1].split(":")[0].strip() for m in messages[1:]] == [
        "received",
        "succeeded in 0.01s",
    ]
    assert messages[0] == "Scheduler: Sending due task embed_images (search.tasks.embed_images)"


def test_a_failed_sweep_is_logged(caplog):
    caplog.set_level(logging.INFO)
    trace.logger.log(
        logging.ERROR,
        trace.LOG_FAILURE,
        {
            "id": "abc",
            "name": "search.tasks.sweep",
            "description": "raised unexpected",
            "exc": "OperationalError()",
        },
    )
    assert [r.getMessage() for r in caplog.records] == [
        "Task search.tasks.sweep[abc] raised unexpected: OperationalError()"
    ]


def test_debug_level_logs_every_sweep(caplog):
    caplog.set_level(logging.DEBUG)
    _run_logged("search.tasks.sweep", IDLE)
    assert len([r for r in caplog.records if "sweep" in r.getMessage()]) == 3


def test_a_result_it_cannot_read_is_logged():
    assert task_logs._did_something("<object at 0x1>")
    assert task_logs._did_something("[0, 0]")
    assert not task_logs._did_something(repr(IDLE))


def test_the_start_up_sweep_is_logged_even_when_it_found_nothing(caplog):
    caplog.set_level(logging.INFO)
    _run_logged("search.tasks.sweep", IDLE, kwargs="{'at_start': True}")
    messages = [r.getMessage() for r in caplog.records if "sweep[abc]" in r.getMessage()]
    assert [m.split("]", 1)[1].split(":")[0].strip() for m in messages] == ["received", "succeeded in 0.01s"]
