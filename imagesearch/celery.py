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
