"""The start-up refusal: a vector store this database cannot serve (``IMAGESEARCH_VECTOR_BACKEND=
pgvector`` without the extension, ...).

A Django system check, so ``manage.py migrate`` (which ``./run`` runs first), ``check`` and
``runserver`` refuse with what to install; gunicorn and the Celery worker ask
:func:`refuse_unless_usable` as they start, since neither runs Django's checks.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.db import connection

from .selection import vector_store


def vector_store_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    found = vector_store().unusable(connection)
    if found is None:
        return []
    if found.migrate_fixes:  # only a warning, so that the migrate that completes the set-up runs
        return [checks.Warning(found.reason, id="search.W001")]
    return [checks.Error(found.reason, id="search.E001")]


def refuse_unless_usable() -> None:
    """Exit with the reason when this database cannot serve the configured store."""
    found = vector_store().unusable(connection)
    connection.close()  # opened before a fork (gunicorn, celery prefork): not to be shared
    if found is not None:
        raise SystemExit(f"Refusing to start: {found.reason}")
