"""gunicorn's threaded worker, parking the keep-alive connection of a client it has just
refused for its rate limit (a 429 from search.query.throttle), and quitting without waiting on
its own thread pool's lock.

A refused request is cheap, but a client that sends the next one the moment the answer arrives
(a flood on many connections) still keeps the cores busy with refusals, and everyone else's
searches wait behind them. The connection of a refused request is therefore handed back to the
poller only after ``PARK_SECONDS``: no thread waits meanwhile, and each such connection gets at
most one answer per ``PARK_SECONDS``. Any other answer goes back at once, as in gunicorn's own
worker. (A client opening a new connection for every request is not slowed here; a reverse
proxy's per-address connection limit is the place for that: docs/operations.md, "Behind a proxy".)
"""

from __future__ import annotations

import threading
import time

from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import ThreadWorker

from search.query import throttle

PARK_SECONDS = 1.0


class ParkingThreadWorker(ThreadWorker):
    def handle(self, conn):
        """Serve one request (a worker thread), noting whether it was a rate-limit refusal."""
        throttle.refusal_taken()  # nothing left over from this thread's last request
        keepalive = super().handle(conn)
        retry_after = throttle.refusal_taken()
        if keepalive is True and retry_after:
            conn.imagesearch_parked_until = time.monotonic() + min(float(retry_after), PARK_SECONDS)
        return keepalive

    def finish_request(self, conn, fs):
        """Back to the poller (the main thread): a refused client's connection after its pause."""
        delay = getattr(conn, "imagesearch_parked_until", 0.0) - time.monotonic()
        if delay > 0 and self.alive and not fs.cancelled() and fs.exception() is None:
            conn.imagesearch_parked_until = 0.0
            timer = threading.Timer(delay, self.method_queue.defer, args=(super().finish_request, conn, fs))
            timer.daemon = True
            timer.start()
            return
        super().finish_request(conn, fs)

    def handle_quit(self, sig, frame):
        """SIGINT / SIGQUIT: leave at once (``worker_int``, then ``SystemExit``), as gunicorn's base
        worker does, without ``ThreadWorker``'s shutdown of the thread pool first.

        A signal handler runs in the main thread, between any two of its steps. That shutdown
        takes the pool's lock, which the main thread may be holding already: inside the pool's
        ``submit`` (each accepted request), or inside the first quit signal's own shutdown when
        a second one comes (a Ctrl-C reaches the master and the workers, and the master's
        SIGQUIT follows). The lock is not reentrant, so the worker waited on itself until the
        master killed it after its graceful timeout. Nothing needs that shutdown: the worker
        ends with ``os._exit`` (``imagesearch.gunicorn_conf.worker_exit``), its threads with it.
        """
        Worker.handle_quit(self, sig, frame)
