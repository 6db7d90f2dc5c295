"""Two relabels of one image at once run one after the other: a relabel locks the image's row
before it reads or writes any label, so the second sees the first one's labels and the image
ends with the last set (on PostgreSQL, without the lock, each read the old set and the image
ended with both new ones)."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection, connections
from django.test.utils import CaptureQueriesContext

from gallery import services
from gallery.models import Image
from tests.factories import create_images


# SQLite runs one writing transaction at a time: there, two relabels cannot interleave.
@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_relabel_waits_for_the_image_row_before_it_touches_any_label():
    [pk] = create_images([(1, ["sunset"])])
    image = Image.objects.get(pk=pk)
    other = connections.create_connection("default")  # another request's transaction
    other.set_autocommit(False)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT id FROM gallery_image WHERE id = %s FOR UPDATE", [pk])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")
        with CaptureQueriesContext(connection) as queries, pytest.raises(OperationalError):
            services.image_relabel(image=image, names=["dawn"])
        touched = [q["sql"] for q in queries.captured_queries if "gallery_label" in q["sql"]]
        assert touched == []  # it waited on the image first, having read or written no label
    finally:
        other.rollback()
        other.close()
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
    services.image_relabel(image=Image.objects.get(pk=pk), names=["dawn"])
    assert Image.objects.get(pk=pk).label_names == ["dawn"]
