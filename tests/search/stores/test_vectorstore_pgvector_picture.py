"""The pgvector store's picture column: each row's image vector beside its hybrid, with HNSW
indexes of its own, written with the hybrid, backfilled by the sweep, and searched for an
emphasised query (``nearest(picture_needed=...)``)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from gallery import services as gallery_services
from gallery.models import Image, Label
from search import encoder, status
from search.ingest import pipeline, sweep
from search.models import ImageVector
from search.stores import selection
from search.stores.pgvector import store
from tests.factories import create_images

pytestmark = [pytest.mark.pgvector, pytest.mark.django_db, pytest.mark.usefixtures("pgvector_store")]

HALF = 2e-3  # halfvec's precision on a unit vector's inner products


def _picture(pk: int) -> np.ndarray:
    return np.asarray(ImageVector.objects.get(image_id=pk).picture, dtype=np.float32)


def _image_vector(pk: int) -> np.ndarray:
    return encoder.from_bytes(Image.objects.get(pk=pk).image_vector)


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_picture_is_written_at_ingest_and_kept_through_a_relabel():
    [zebra] = create_images([(7, ["zebra"])])
    pipeline.images_embed(image_ids=[zebra])
    assert np.allclose(_picture(zebra), _image_vector(zebra), atol=HALF)
    hybrid_before = np.asarray(ImageVector.objects.get(image_id=zebra).embedding)

    gallery_services.image_relabel(image=Image.objects.get(pk=zebra), names=["bicycle", "moon"])
    pipeline.hybrids_refresh(image_ids=[zebra])  # as the worker does with the relabel's message

    row = ImageVector.objects.get(image_id=zebra)
    assert not np.allclose(np.asarray(row.embedding), hybrid_before, atol=HALF)  # the hybrid moved
    assert np.allclose(_picture(zebra), _image_vector(zebra), atol=HALF)  # the picture did not


def test_rows_written_before_the_picture_column_are_behind_until_the_sweep_fills_them(staff_client):
    ids = create_images([(1, ["zebra"]), (2, ["moon"]), (3, ["snow"])])
    pipeline.images_embed(image_ids=ids)
    ImageVector.objects.filter(image_id__in=ids[:2]).update(picture=None)  # as an upgrade leaves them

    assert status.index_behind()
    figures = status.index_status()["pgvector"]
    assert (figures["vectors"], figures["pictures"], figures["missing"]) == (3, 1, 2)
    page = staff_client.get("/admin/search/indexstate/status/").content
    assert b"2 ready image(s) wait for their vector or its picture" in page

    assert sweep.index_sweep()["vectors_backfilled"] == 2
    assert all(np.allclose(_picture(pk), _image_vector(pk), atol=HALF) for pk in ids)
    assert not status.index_behind()
    assert store.vectors_summary(encoder.model_name())["pictures"] == 3


def _index_names() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, "search_imagevector"))


def test_migrate_gives_a_database_that_had_hybrids_the_picture_index():
    [zebra] = create_images([(7, ["zebra"])])
    pipeline.images_embed(image_ids=[zebra])
    dimension = encoder.dimension()
    picture_index = store.index_name(dimension, "picture")
    assert {store.index_name(dimension), picture_index} <= _index_names()
    with connection.schema_editor() as editor:  # a database from before the picture column
        editor.remove_index(ImageVector, store.hnsw_index(dimension, "picture"))
    assert picture_index not in _index_names()

    call_command("migrate", verbosity=0)

    assert picture_index in _index_names()


@pytest.fixture
def pictures_library():
    """60 ready rows whose pictures and hybrids are unrelated random vectors (the hybrid ranking
    says nothing of the picture ranking), labels "even"/"odd" and a few "rare"; one row no longer
    ready and one deleted, both nearest of all by picture."""
    dimension = encoder.dimension()
    rng = np.random.default_rng(8)
    query = _unit(rng, 1, dimension)[0]
    pictures, hybrids = _unit(rng, 62, dimension), _unit(rng, 62, dimension)
    pictures[60] = pictures[61] = query  # the two that must never appear
    now = timezone.now()
    model = encoder.model_name()
    images = Image.objects.bulk_create(
        [
            Image(
                file=f"images/p/{i}.png",
                sha256=f"picture-{i:040d}",
                content_type="image/png",
                status=Image.Status.READY,
                embedding_model=model,
                image_vector=encoder.to_bytes(p),
                hybrid_vector=encoder.to_bytes(h),
                hybrid_weight=0.5,
                hybrid_updated_at=now,
            )
            for i, (p, h) in enumerate(zip(pictures, hybrids, strict=True))
        ]
    )
    ids = [image.pk for image in images]
    even, odd, rare = (Label.objects.create(name=name) for name in ("even", "odd", "rare"))
    even.images.add(*ids[0::2])
    odd.images.add(*ids[1::2])
    rare.images.add(*ids[:10])
    store.hybrids_write(list(zip(ids, hybrids, strict=True)), model=model, now=now)
    Image.objects.filter(pk=ids[60]).update(status=Image.Status.PENDING)
    Image.objects.filter(pk=ids[61]).delete()
    return {"ids": ids[:60], "pictures": pictures[:60], "query": query, "labels": (even, odd, rare)}


def _expected(lib, k: int, keep=lambda i: True) -> list[int]:
    scores = lib["pictures"] @ lib["query"]
    order = [i for i in np.argsort(-scores) if keep(i)]
    return [lib["ids"][i] for i in order[:k]]


def _by_picture(lib, k: int, **filters):
    return selection.vector_store().nearest(
        lib["query"][None, :],
        needed=5,
        exclude_id=filters.get("exclude_id"),
        label_ids=filters.get("label_ids", []),
        without_label_ids=filters.get("without_label_ids", ()),
        slot=contextlib.nullcontext,
        picture_needed=k,
    )


def test_nearest_by_picture_returns_the_ready_rows_nearest_by_their_image_vectors(pictures_library):
    lib = pictures_library
    nearest = _by_picture(lib, 8)
    found = [image.pk for image, _ in nearest.by_picture]
    assert found == _expected(lib, 8)
    position = {pk: i for i, pk in enumerate(lib["ids"])}
    for image, score in nearest.by_picture:
        assert score == pytest.approx(float(lib["pictures"][position[image.pk]] @ lib["query"]), abs=HALF)
    assert len(nearest.found) == 5  # the hybrid pool is still answered
    assert [image.pk for image, _ in nearest.found] != found[:5]


def test_nearest_by_picture_keeps_the_filters_of_the_hybrid_pool(pictures_library):
    lib = pictures_library
    even, odd, rare = lib["labels"]
    best = _expected(lib, 1)[0]
    position = {pk: i for i, pk in enumerate(lib["ids"])}

    excluded = _by_picture(lib, 6, exclude_id=best).by_picture
    assert [i.pk for i, _ in excluded] == _expected(lib, 6, lambda i: lib["ids"][i] != best)

    labelled = _by_picture(lib, 6, label_ids=[odd.pk]).by_picture
    assert [i.pk for i, _ in labelled] == _expected(lib, 6, lambda i: i % 2 == 1)

    rare_even = _by_picture(lib, 6, label_ids=[rare.pk], without_label_ids=[odd.pk]).by_picture
    assert [i.pk for i, _ in rare_even] == _expected(lib, 6, lambda i: i < 10 and i % 2 == 0)
    assert len(rare_even) == 5  # fewer rows than asked for: all of them
    assert all(position[i.pk] < 10 for i, _ in rare_even)


def test_nearest_by_picture_walks_the_picture_index(pictures_library, settings):
    lib = pictures_library
    settings.IMAGESEARCH_PGVECTOR_EF_SEARCH = 1  # the narrowest walk: the iterative scan fills it
    with connection.cursor() as cursor:  # take the order from the index, not a sort of every row
        cursor.execute(
            "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true)"
        )
    query = store.nearest_query(lib["query"], model=encoder.model_name(), needed=8, column="picture")
    plan = query.explain()
    assert store.index_name(encoder.dimension(), "picture") in plan
    found = store.nearest(lib["query"], model=encoder.model_name(), needed=8, column="picture")
    assert [image.pk for image, _ in found] == _expected(lib, 8)


def test_a_row_without_its_picture_is_not_searched_by_picture(pictures_library):
    lib = pictures_library
    best = _expected(lib, 1)[0]
    ImageVector.objects.filter(image_id=best).update(picture=None)
    found = [image.pk for image, _ in _by_picture(lib, 3).by_picture]
    assert best not in found and len(found) == 3


def test_no_picture_search_is_made_unless_asked(pictures_library):
    assert _by_picture(pictures_library, 0).by_picture == []
