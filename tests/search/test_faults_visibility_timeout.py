"""Fault: a task runs longer than Redis's visibility timeout, so Redis hands its message to
another worker process while the first run goes on. The copy must not run in parallel.

What is chosen, and why (see REDIS_BROKER_TRANSPORT_OPTIONS in the settings): the timeout is an
hour, while our longest tasks take seconds (one embedding batch of IMAGESEARCH_EMBED_BATCH_SIZE
images) to under a minute (a rebuild at a million vectors), so in production a copy is not
expected at all. Waiting an hour is not a test, so this one scales the timeout down to 2 s and
makes an embedding task outlive it for real: the task's rows are held (as a slow database would)
so that it cannot finish. The copy that Redis delivers to the second pool process finds the
task's run lock held and backs off; the images go through the model once.

The waits are bounded by what the test sets up, not by how fast the machine is: the hold ends
before the held run would stop waiting for its rows (HELD_ROWS_WAIT of the worker's settings),
and once released the images are embedded within the bound the tests give a real worker to embed
a few images (INDEXED_TIMEOUT). A run that fails ends the wait at once, with the worker's log.
"""

from __future__ import annotations

import ast
import re
import time

import pytest

from gallery.models import Image
from gallery.services import images_create
from tests.factories import upload
from tests.support import settings_short_visibility as short
from tests.support.constants import INDEXED_TIMEOUT
from tests.support.images import image_bytes
from tests.support.workers import clear_shared_index, pool_process_running_an_embedding, rows_held

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# The hold ends this long before the held run would give up waiting for its rows.
HOLD_MARGIN = 10
# A worker's start (tests.support.processes.CeleryWorker), the hold, then the embedding.
TEST_TIMEOUT = 120 + short.HELD_ROWS_WAIT + INDEXED_TIMEOUT
_RAN = re.compile(r"embed_images\[[0-9a-f-]+\] (succeeded in [0-9.e-]+s: (\{.*\})|raised .*)")


@pytest.mark.timeout(TEST_TIMEOUT)
def test_a_task_outliving_the_visibility_timeout_is_redelivered_but_never_runs_twice_at_once(
    private_redis, start_worker
):
    clear_shared_index()
    worker = start_worker(
        "--pool",
        "prefork",
        "--concurrency",
        "2",
        broker=private_redis.url,
        env_overrides={"DJANGO_SETTINGS_MODULE": "tests.support.settings_short_visibility"},
    )
    result = images_create(uploads=[upload(image_bytes(700 + i), ["osprey"], f"o{i}.png") for i in range(4)])
    ids = result.added
    with rows_held(ids):
        released_by = time.monotonic() + short.HELD_ROWS_WAIT - HOLD_MARGIN

        def within_the_hold(predicate, what: str) -> None:
            left = released_by - time.monotonic()
            worker.wait_while_running(
                predicate,
                timeout=max(left, 0.0),
                what=f"{what}, before the held run stops waiting for its rows",
            )

        within_the_hold(lambda: pool_process_running_an_embedding(worker.proc.pid), "the first run")
        task_id = re.search(r"embed_images\[([0-9a-f-]+)\] received", worker.log_path.read_text()).group(1)
        # Past the 2 s timeout the message is delivered again, to the other pool process (the
        # worker looks for unacknowledged messages every second: about 3 s on an idle machine)...
        within_the_hold(
            lambda: worker.log_path.read_text().count(f"embed_images[{task_id}] received") >= 2,
            "Redis re-delivering the unacknowledged message",
        )
        # ...which finds the first run still going and backs off.
        within_the_hold(
            lambda: f"task {task_id} is already running" in worker.log_path.read_text(),
            "the copy backing off",
        )

    def embedded_in_all_runs() -> int:
        # Every run of embed_images counts, not only the re-delivered one: the worker's start-up
        # sweep may hand the same pending images to a task of its own, and whichever run claims
        # them embeds them. The claim (not the task id) is what keeps them from going through the
        # model twice.
        total = 0
        for run in _RAN.finditer(worker.log_path.read_text()):
            if run.group(2) is None:  # it raised: nothing runs its images again by itself
                raise AssertionError(f"an embedding run failed: {run.group(0)}")
            total += ast.literal_eval(run.group(2))["embedded"]
        return total

    def embedded() -> bool:
        ready = Image.objects.filter(pk__in=ids, status="ready").count() == len(ids)
        return ready and embedded_in_all_runs() >= len(ids)

    worker.wait_while_running(embedded, timeout=INDEXED_TIMEOUT, what="the images embedded and ready")
    assert embedded_in_all_runs() == len(ids)  # through the model once
