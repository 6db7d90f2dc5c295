"""Re-reading ranked ids as result rows: one plain query, the columns a result needs.

Every store's hits are re-read from the rows (a row deleted or no longer ready since the index
was built never shows; docs/architecture.md, 'Invariants'). A page re-reads some 30 ids per
search: through the ORM, building and compiling the query cost twice what the database did, so
the FAISS store reads them here in plain SQL, only the columns of
``gallery.models.RESULT_FIELDS`` (what pages and API answers show of a hit, and the image vector
and hybrid weight its explanation needs), turned into model instances as the ORM would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from gallery.models import RESULT_FIELDS, Image


@dataclass(frozen=True)
class _Statement:
    """What a connection's re-read needs besides the ids: the query's fixed head, the label
    tests, and the backend's conversions of the values read (SQLite's datetimes), as the ORM
    applies them. Worked out once per connection: on every search page, building them cost more
    than running the query."""

    head: str  # SELECT ... WHERE status = %s AND pk IN (
    carries: str  # EXISTS (... label =) without the value
    converting: tuple[tuple[int, Any, tuple[Any, ...]], ...]  # (position, column, converters)
    attnames: tuple[str, ...]


_statements: WeakKeyDictionary[Any, _Statement] = WeakKeyDictionary()


def _statement(connection: Any) -> _Statement:
    found = _statements.get(connection)
    if found is not None:
        return found
    quote = connection.ops.quote_name
    meta, links = Image._meta, Image.labels.through._meta
    fields = [meta.get_field(name) for name in RESULT_FIELDS]
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    link_table = quote(links.db_table)
    link_image, link_label = quote(links.get_field("image").column), quote(links.get_field("label").column)
    converting = []
    for i, field in enumerate(fields):
        column = field.get_col(meta.db_table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if converters:
            converting.append((i, column, tuple(converters)))
    found = _Statement(
        head=f"SELECT {', '.join(f'{table}.{quote(field.column)}' for field in fields)} FROM {table}"
        f" WHERE {table}.{quote(meta.get_field('status').column)} = %s AND {table}.{pk} IN (",
        carries=f"SELECT 1 FROM {link_table} l WHERE l.{link_image} = {table}.{pk} AND l.{link_label}",
        converting=tuple(converting),
        attnames=tuple(field.attname for field in fields),
    )
    _statements[connection] = found
    return found


def rows_by_id(
    ids: Sequence[int], *, label_ids: Sequence[int] = (), without_label_ids: Sequence[int] = ()
) -> dict[int, Image]:
    """The ready rows among ``ids`` that carry every label of ``label_ids`` and none of
    ``without_label_ids``, by id (the filters of ``rows.with_labels`` and ``rows.without_labels``)."""
    if not ids:
        return {}
    connection = connections[DEFAULT_DB_ALIAS]  # this thread's own (the cache's key)
    statement = _statement(connection)
    sql = [statement.head + ", ".join(["%s"] * len(ids)) + ")"]
    params: list[object] = [Image.Status.READY.value, *ids]
    for label_id in label_ids:
        sql.append(f"AND EXISTS ({statement.carries} = %s)")
        params.append(label_id)
    if without_label_ids:
        sql.append(f"AND NOT EXISTS ({statement.carries} IN ({', '.join(['%s'] * len(without_label_ids))}))")
        params.extend(without_label_ids)
    with connection.cursor() as cursor:
        cursor.execute(" ".join(sql), params)
        rows = cursor.fetchall()
    converting, attnames, alias = statement.converting, statement.attnames, connection.alias
    plain = _plain_construction()
    images: dict[int, Image] = {}
    for row in rows:
        if converting:
            row = list(row)
            for i, column, converters in converting:
                for convert in converters:
                    row[i] = convert(row[i], column, connection)
        image = _instance(alias, attnames, row) if plain else Image.from_db(alias, attnames, row)
        images[image.pk] = image
    return images


def _plain_construction() -> bool:
    """Whether an instance read from the database is no more than its values and its state:
    ``Image`` has the model's own ``__init__`` and ``from_db`` and nothing listens to its
    ``pre_init`` or ``post_init``. Then :func:`_instance` builds what ``from_db`` would."""
    return (
        Image.__init__ is Model.__init__
        and Image.from_db.__func__ is Model.from_db.__func__  # type: ignore[attr-defined]
        and not pre_init.has_listeners(Image)
        and not post_init.has_listeners(Image)
    )


def _instance(alias: str, attnames: Sequence[str], values: Sequence[object]) -> Image:
    """``Image.from_db(alias, attnames, values)``: the fields read set as ``Model.__init__`` sets
    them (each value under its attname; the others deferred, left out), the state of a row
    loaded from ``alias``. A page's 30 rows through ``Model.__init__`` were a tenth of its
    request's own work."""
    image = Image.__new__(Image)
    state = ModelState()
    state.adding, state.db = False, alias
    image.__dict__["_state"] = state
    image.__dict__.update(zip(attnames, values, strict=True))
    return image
