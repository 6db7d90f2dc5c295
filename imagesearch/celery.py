"""The Celery application. Workers start it with ``celery -A imagesearch worker``."""

from __future__ import annotations

import os

from celery import Celery

from . import task_logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")

app = Celery("imagesearch")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
task_logs.install()  # the periodic sweep logged only when it did something


# How often a worker waiting on the embedded broker looks whether it was asked to stop (seconds).
EMBEDDED_BROKER_STOP_CHECK = 0.25


def _tune_embedded_broker() -> None:
    """Poll the embedded SQLite broker often enough that a task starts within ~50 ms, and stop
    waiting on it as soon as the worker is asked to stop.

    kombu hands the transport options of ``sqla+`` URLs to SQLAlchemy's ``create_engine``, which
    rejects unknown keys, so the polling interval is set on the transport class instead.

    A polled broker has nothing to wake the worker's loop (Celery's blocking loop, not its event
    loop): each turn waits 2 s for a message, and a warm shutdown (SIGTERM, ./run's Ctrl-C)
    runs one more turn after the one it interrupted, 4 s of the worker's stop. The wait is
    therefore cut into EMBEDDED_BROKER_STOP_CHECK slices, and ends (as a timeout, which the loop
    takes as "no message") once a stop was asked for.
    """
    if not str(app.conf.broker_url).startswith("sqla+"):
        return
    import time

    from celery.worker import state
    from kombu.transport import sqlalchemy as sqla_transport

    transport = sqla_transport.Transport
    transport.polling_interval = 0.05
    if getattr(transport.drain_events, "_stops_on_shutdown", False):
        return
    wait = transport.drain_events

    def stop_asked() -> bool:  # as celery.worker.state.maybe_shutdown reads them (0 is a status)
        return any(
            flag is not None and flag is not False for flag in (state.should_stop, state.should_terminate)
        )

    def drain_events(self, connection, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = EMBEDDED_BROKER_STOP_CHECK
            if deadline is not None:
                step = min(step, max(deadline - time.monotonic(), 0.0))
            try:
                return wait(self, connection, timeout=step)
            except TimeoutError:  # socket.timeout: no message in this slice
                if stop_asked() or (deadline is not None and time.monotonic() >= deadline):
                    raise

    drain_events._stops_on_shutdown = True
    transport.drain_events = drain_events


_tune_embedded_broker()


def _survive_broker_loss_with_unacknowledged_messages() -> None:
    """Keep a worker alive when Redis goes away while it holds unacknowledged messages.

    With celery 5.7 / kombu 5.7, after a lost broker connection the consumer collects the
    connection's transport and then closes the connection; closing its channel tries to put the
    unacknowledged messages (an ``acks_late`` task in flight, a countdown rebuild it reserved)
    back on the queue through the collected transport, raises ``AttributeError`` and the worker
    exits with "Unrecoverable error". Nothing can be restored at that moment anyway: the
    messages stay in Redis's unacknowledged set (redelivered after the visibility timeout if
    Redis kept them), and the sweep re-enqueues the work they stood for (images left pending, a
    rebuild claimed but never run). Proven by tests/search/test_faults_redis_down.py.
    """
    import functools
    import logging

    from kombu.transport import redis as redis_transport

    original = redis_transport.QoS.restore_unacked
    if getattr(original, "_survives_broker_loss", False):
        return

    @functools.wraps(original)
    def restore_unacked(self, client=None):
        if client is None and getattr(self.channel.connection, "client", None) is None:
            logging.getLogger(__name__).warning(
                "broker connection lost holding %d unacknowledged message(s); the sweep "
                "re-enqueues their work",
                len(self._delivered),
            )
            self._delivered.clear()
            return None
        return original(self, client)

    restore_unacked._survives_broker_loss = True
    redis_transport.QoS.restore_unacked = restore_unacked

    # A task that was running when the connection went finishes after it: its acknowledgement
    # then goes through the same collected transport and raises the same AttributeError, out of
    # the consumer's loop. The message cannot be acknowledged on a lost connection; it stays in
    # Redis's unacknowledged set and, redelivered, finds its work done (every task is idempotent).
    for name in ("ack", "reject"):
        settle = getattr(redis_transport.QoS, name)

        @functools.wraps(settle)
        def settle_or_forget(self, delivery_tag, *args, _settle=settle, **kwargs):
            if getattr(self.channel.connection, "client", None) is None:
                logging.getLogger(__name__).warning(
                    "a task finished after the broker connection was lost: its message stays "
                    "unacknowledged (redelivered later, its work already done)"
                )
                self._delivered.pop(delivery_tag, None)
                return None
            return _settle(self, delivery_tag, *args, **kwargs)

        setattr(redis_transport.QoS, name, settle_or_forget)


_survive_broker_loss_with_unacknowledged_messages()
