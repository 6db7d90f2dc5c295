"""Image.label_names: from prefetched labels when there are some, and never stale."""

import pytest
from django.db.models import prefetch_related_objects

from gallery.models import Image
from gallery.services import image_relabel
from tests.factories import create_images

pytestmark = pytest.mark.django_db


def test_label_names_follow_a_relabel_of_a_prefetched_image(django_assert_num_queries):
    image = Image.objects.get(pk=create_images([(1, ["zebra", "sunset"])])[0])
    prefetch_related_objects([image], "labels")
    with django_assert_num_queries(0):
        assert sorted(image.label_names) == ["sunset", "zebra"]

    image_relabel(image=image, names=["bicycle"])

    assert image.label_names == ["bicycle"]
