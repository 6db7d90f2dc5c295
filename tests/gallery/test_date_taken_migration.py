"""The migration that brings the date taken marks every image already stored as not read yet
(the worker reads those once), while images uploaded later are read at upload."""

from __future__ import annotations

import pytest

from tests.support.migrations import migrate, migrate_to_the_latest

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("gallery", "0003_display_copies")
AFTER = ("gallery", "0004_date_taken")


def test_images_stored_before_the_migration_are_left_for_the_worker_to_read():
    old = migrate(BEFORE).get_model("gallery", "Image")
    old.objects.create(sha256="a" * 64, file="images/aa/x.jpg", content_type="image/jpeg")
    try:
        new = migrate(AFTER).get_model("gallery", "Image")
        assert list(new.objects.values_list("taken_at_read", "taken_at")) == [(False, None)]
        later = new.objects.create(sha256="b" * 64, file="images/bb/y.jpg", content_type="image/jpeg")
        assert new.objects.get(pk=later.pk).taken_at_read is True
    finally:
        migrate_to_the_latest()
