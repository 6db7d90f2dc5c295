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

from django.db import connection

from gallery.models import RESULT_FIELDS, Image


def rows_by_id(
    ids: Sequence[int], *, label_ids: Sequence[int] = (), without_label_ids: Sequence[int] = ()
) -> dict[int, Image]:
    """The ready rows among ``ids`` that carry every label of ``label_ids`` and none of
    ``without_label_ids``, by id (the filters of ``rows.with_labels`` and ``rows.without_labels``)."""
    if not ids:
        return {}
    quote = connection.ops.quote_name
    meta, links = Image._meta, Image.labels.through._meta
    fields = [meta.get_field(name) for name in RESULT_FIELDS]
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    link_table = quote(links.db_table)
    link_image, link_label = quote(links.get_field("image").column), quote(links.get_field("label").column)
    carries = f"SELECT 1 FROM {link_table} l WHERE l.{link_image} = {table}.{pk} AND l.{link_label}"
    sql = [
        f"SELECT {', '.join(f'{table}.{quote(field.column)}' for field in fields)} FROM {table}"
        f" WHERE {table}.{quote(meta.get_field('status').column)} = %s"
        f" AND {table}.{pk} IN ({', '.join(['%s'] * len(ids))})"
    ]
    params: list[object] = [Image.Status.READY.value, *ids]
    for label_id in label_ids:
        sql.append(f"AND EXISTS ({carries} = %s)")
        params.append(label_id)
    if without_label_ids:
        sql.append(f"AND NOT EXISTS ({carries} IN ({', '.join(['%s'] * len(without_label_ids))}))")
        params.extend(without_label_ids)
    with connection.cursor() as cursor:
        cursor.execute(" ".join(sql), params)
        rows = cursor.fetchall()
    # The backend's conversions of the values read (SQLite's datetimes), as the ORM applies them.
    converting = []
    for i, field in enumerate(fields):
        column = field.get_col(meta.db_table)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if found:
            converting.append((i, column, found))
    attnames = [field.attname for field in fields]
    images: dict[int, Image] = {}
    for row in rows:
        if converting:
            row = list(row)
            for i, column, converters in converting:
                for convert in converters:
                    row[i] = convert(row[i], column, connection)
        image = Image.from_db(connection.alias, attnames, row)
        images[image.pk] = image
    return images
