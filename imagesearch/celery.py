"""The Celery application. Workers start it with ``celery -A imagesearch worker``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")

app = Celery("imagesearch")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _tune_embedded_broker() -> None:
    """Poll the embedded SQLite broker often enough that a task starts within ~50 ms.

    kombu hands the transport options of ``sqla+`` URLs to SQLAlchemy's ``create_engine``, which
    rejects unknown keys, so the polling interval is set on the transport class instead.
    """
    if str(app.conf.broker_url).startswith("sqla+"):
        from kombu.transport import sqlalchemy as sqla_transport

        sqla_transport.Transport.polling_interval = 0.05


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
