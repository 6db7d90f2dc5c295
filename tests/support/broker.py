"""Pointing this process's Celery app at another broker (a test's private redis-server), and
emptying a queue."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from django.conf import settings
from kombu import Connection, pools

from imagesearch.celery import app


@contextlib.contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app at ``url`` for the block (the app read its broker from the
    settings once, at first use), with the Redis transport options of the settings."""

    def drop_pools() -> None:
        # Connections to the previous broker are cached in the app's pools and in kombu's
        # process-wide registry of producer pools, keyed by connection: a closed pool left in
        # that registry is handed out again later ("Acquire on closed pool"), so clear it too.
        for pool in (app._pool, app.amqp._producer_pool):
            if pool is not None:
                with contextlib.suppress(Exception):
                    pool.force_close_all()
        pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    # Celery prefers the CELERY_BROKER_URL environment variable to its configuration.
    saved = (os.environ.get("CELERY_BROKER_URL"), app.conf.broker_url, app.conf.broker_transport_options)
    drop_pools()
    os.environ["CELERY_BROKER_URL"] = app.conf.broker_url = url
    app.conf.broker_transport_options = dict(settings.REDIS_BROKER_TRANSPORT_OPTIONS)
    try:
        yield
    finally:
        drop_pools()
        env_url, app.conf.broker_url, app.conf.broker_transport_options = saved
        if env_url is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = env_url


def queue_purge(url: str, queue: str) -> int:
    """Drop every message waiting in ``queue`` on the broker at ``url``; returns how many there
    were. Through kombu, so that it works for Redis (every priority list of the queue) and for
    the embedded SQLAlchemy broker alike."""
    redis = url.startswith(("redis://", "rediss://"))
    options = dict(settings.REDIS_BROKER_TRANSPORT_OPTIONS) if redis else {}
    with Connection(url, transport_options=options, connect_timeout=5) as connection:
        return connection.default_channel.queue_purge(queue) or 0
