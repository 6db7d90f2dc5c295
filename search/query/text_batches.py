"""Query texts that wait together in one web process are encoded together.

Encoding a short query costs little more for a few texts than for one: the text tower reads all
of its weights for each call, and a few more tokens add little to that (on 2 cores with one ONNX
thread, 4 texts cost about 2.3 times one, 8 about 4 times). Under load a process's requests queue
for its model slot (:mod:`search.query.slots`). Of the requests waiting, as many as the process
has slots lead: each takes a slot, then every text waiting by then (up to :data:`MAX_BATCH`),
encodes them in one call and hands each request its vector; the others wait for their vector,
or to lead next. A request that arrives alone leads at once and is encoded alone, as soon as a
slot is free: nothing ever waits for company.

The slot keeps its meaning: one batch is one piece of model work, and a request whose text no
leader took within the slot wait is refused (:class:`search.query.slots.ModelBusy`), as before.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from .. import encoder
from . import slots

#: The most texts one encode takes: more than a process's request threads ever hold at once.
MAX_BATCH = 8

_cond = threading.Condition()
# Guarded by _cond: the jobs no leader took yet (oldest first), and how many requests lead now.
_waiting: list[_Job] = []
_leaders = 0


@dataclass(eq=False)  # compared by identity: two requests for one text are two jobs
class _Job:
    text: str
    done: bool = False
    vector: np.ndarray | None = None
    error: BaseException | None = None


def encode(text: str) -> np.ndarray:
    """The unit vector of one cleaned query text, encoded with whatever texts wait beside it.

    Raises :class:`search.query.slots.ModelBusy` when no leader takes the text within the slot
    wait, and what the encoder raised (``ModelUnavailable``) when its batch failed.
    """
    global _leaders
    job = _Job(text)
    deadline = time.monotonic() + settings.IMAGESEARCH_MODEL_SLOT_WAIT
    with _cond:
        _waiting.append(job)
        while not job.done and (job not in _waiting or _leaders >= slots.size()):
            if job not in _waiting:  # a leader took it: it notifies when the batch is done
                _cond.wait()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _waiting.remove(job)  # no leader took it within the wait: refused
                raise slots.busy()
            _cond.wait(timeout=remaining)
        if job.done:
            return _result(job)
        _leaders += 1
    try:
        with slots.model_slot(wait=deadline - time.monotonic()):
            batch = _take(job)
            if batch:
                _run(batch)
    except slots.ModelBusy:
        with _cond:
            if job in _waiting:  # refused; another request leads next
                _waiting.remove(job)
                raise
    finally:
        with _cond:
            _leaders -= 1
            _cond.notify_all()
    with _cond:  # a leader that came before took it, and is encoding it
        _cond.wait_for(lambda: job.done)
    return _result(job)


def _result(job: _Job) -> np.ndarray:
    if job.error is not None:
        raise job.error
    assert job.vector is not None
    return job.vector


def _take(job: _Job) -> list[_Job]:
    """``job`` and the oldest others waiting, up to MAX_BATCH; none if another leader took it."""
    with _cond:
        if job not in _waiting:
            return []
        others = [waiting for waiting in _waiting if waiting is not job][: MAX_BATCH - 1]
        batch = [job, *others]
        for taken in batch:
            _waiting.remove(taken)
    return batch


def _run(batch: list[_Job]) -> None:
    """Encode a batch and hand each job its vector, or the error; every job ends done."""
    vectors: list[np.ndarray] = []
    error: BaseException | None = None
    try:
        vectors = encoder.encode_query_texts([job.text for job in batch])
    except BaseException as exc:  # noqa: BLE001 - handed to each request, which raises it
        error = exc
    with _cond:
        for i, job in enumerate(batch):
            job.vector, job.error, job.done = (None if error else vectors[i]), error, True
        _cond.notify_all()
