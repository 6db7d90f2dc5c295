"""Query texts that wait together in one web process are encoded together.

Encoding a short query costs little more for a few texts than for one: the text tower reads all
of its weights for each call, and a few more tokens add little to that (on 2 cores with one ONNX
thread, 4 texts cost about 2.3 times one, 8 about 4 times). Under load a process's requests queue
for its model slot (:mod:`search.query.slots`); the one that gets the slot encodes every text
waiting by then, up to :data:`MAX_BATCH`, and hands each request its vector. A request that
arrives alone is encoded alone, as soon as a slot is free: nothing ever waits for company.

The slot keeps its meaning: one batch is one piece of model work, and a request whose text no
slot holder took within the slot wait is refused (:class:`search.query.slots.ModelBusy`), as
before.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from .. import encoder
from . import slots

#: The most texts one encode takes: more than a process's request threads ever hold at once.
MAX_BATCH = 8

_lock = threading.Lock()
_waiting: list[_Job] = []  # oldest first; a job leaves it when a slot holder takes it


@dataclass(eq=False)  # compared by identity: two requests for one text are two jobs
class _Job:
    text: str
    done: threading.Event = field(default_factory=threading.Event)
    vector: np.ndarray | None = None
    error: BaseException | None = None


def encode(text: str) -> np.ndarray:
    """The unit vector of one cleaned query text, encoded with whatever texts wait beside it.

    Raises :class:`search.query.slots.ModelBusy` when no slot frees and no slot holder takes the
    text within the slot wait, and what the encoder raised (``ModelUnavailable``) when its batch
    failed.
    """
    job = _Job(text)
    with _lock:
        _waiting.append(job)
    try:
        with slots.model_slot():
            batch = _take(job)
            if batch:
                _run(batch)
    except slots.ModelBusy:
        with _lock:
            if job in _waiting:  # nobody took it: refused, like any model work without a slot
                _waiting.remove(job)
                raise
        # A slot holder took it meanwhile and is encoding it: its result comes below.
    job.done.wait()
    if job.error is not None:
        raise job.error
    assert job.vector is not None
    return job.vector


def _take(job: _Job) -> list[_Job]:
    """``job`` and the oldest others waiting, up to MAX_BATCH; none if another holder took it."""
    with _lock:
        if job not in _waiting:
            return []
        others = [waiting for waiting in _waiting if waiting is not job][: MAX_BATCH - 1]
        batch = [job, *others]
        for taken in batch:
            _waiting.remove(taken)
    return batch


def _run(batch: list[_Job]) -> None:
    """Encode a batch and hand each job its vector, or the error; every job ends done."""
    try:
        vectors = encoder.encode_query_texts([job.text for job in batch])
    except BaseException as exc:  # noqa: BLE001 - handed to each request, which raises it
        for job in batch:
            job.error = exc
    else:
        for job, vector in zip(batch, vectors, strict=True):
            job.vector = vector
    finally:
        for job in batch:
            job.done.set()
