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
    images: dict[int, Image] = {}
    for row in rows:
        if converting:
            row = list(row)
            for i, column, converters in converting:
                for convert in converters:
                    row[i] = convert(row[i], column, connection)
        image = Image.from_db(alias, attnames, row)
        images[image.pk] = image
    return images
