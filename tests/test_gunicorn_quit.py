"""A web process told to quit leaves even when the signal comes while its main thread holds the
thread pool's lock (inside ``submit``, or inside the shutdown of a first quit signal): it must not
wait on a lock it holds itself (imagesearch.gunicorn_worker.ParkingThreadWorker.handle_quit)."""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from imagesearch.gunicorn_worker import ParkingThreadWorker


def _worker() -> ParkingThreadWorker:
    """The parts of a worker that its quit handler uses (gunicorn builds the rest in the process)."""
    worker = ParkingThreadWorker.__new__(ParkingThreadWorker)
    worker.alive = True
    worker.tpool = ThreadPoolExecutor(max_workers=1)
    worker.int_calls = 0

    def worker_int(w):
        w.int_calls += 1

    worker.cfg = SimpleNamespace(worker_int=worker_int)
    return worker


def test_a_quit_signal_handled_while_the_main_thread_holds_the_pools_lock_leaves_at_once():
    worker = _worker()
    outcome: list[BaseException] = []

    def main_thread_inside_submit() -> None:
        with worker.tpool._shutdown_lock:  # where submit() and shutdown() hold it
            try:
                worker.handle_quit(signal.SIGQUIT, None)
            except BaseException as exc:  # noqa: BLE001 - what the handler raises is the result
                outcome.append(exc)

    thread = threading.Thread(target=main_thread_inside_submit, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the quit handler waited on the thread pool's lock"
    assert len(outcome) == 1 and isinstance(outcome[0], SystemExit) and outcome[0].code == 0
    assert worker.alive is False
    assert worker.int_calls == 1  # worker_int ran: later quit signals are ignored
    worker.tpool.shutdown()
