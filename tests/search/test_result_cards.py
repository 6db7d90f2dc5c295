"""A page of results reads its label names in one query and renders each card from them."""

from __future__ import annotations

import re

import pytest
from django.template.loader import render_to_string

from gallery.models import Image
from search.query import ranking
from search.query import vectors as query_vectors
from search.query.explain import Explanation
from search.templatetags.result_cards import file_url, why_bar
from tests.factories import create_indexed_images

pytestmark = pytest.mark.django_db


def test_label_names_of_a_page_come_in_one_query_and_equal_each_rows_own(django_assert_num_queries):
    ids = create_indexed_images([(1, ["zebra", "apple"]), (2, ["moon"]), (3, ["b", "c", "a"])])
    images = list(Image.objects.filter(pk__in=ids).order_by("pk"))
    with django_assert_num_queries(1):
        Image.label_names_load(images)
        loaded = [image.label_names for image in images]
    own = [Image.objects.get(pk=pk).label_names for pk in sorted(ids)]
    assert loaded == own == [["apple", "zebra"], ["moon"], ["a", "b", "c"]]


def test_a_rendered_card_links_the_image_its_thumbnail_labels_and_score():
    ids = create_indexed_images([(1, ["zebra"]), (2, ["moon", "apple"])])
    page = ranking.images_search(vector=query_vectors.query_vector_for_text(text="moon"))
    html = render_to_string("search/_grid.html", {"hits": page.hits, "start": 1})
    cards = html.split('<li class="card" ')[1:]
    assert len(cards) == len(page.hits) == len(ids) == 2
    for hit, card in zip(page.hits, cards, strict=True):
        image, names = hit.image, ", ".join(hit.image.label_names)
        assert card.startswith(f'data-id="{image.pk}"')
        assert f'href="/image/{image.pk}/" aria-label="Image {image.pk}: {names}"' in card
        assert f'src="{image.thumbnail.url}" alt="{names}"' in card
        assert f">{hit.score:.3f}</b>" in card
        assert f'<span class="why-p">picture {hit.why.picture:.3f}</span>' in card
        assert f'href="/?like={image.pk}"' in card
        assert re.findall(r"<li>([^<]*)</li>", card) == image.label_names


def test_a_part_or_score_that_rounds_to_zero_is_shown_without_a_minus_sign():
    # "looks like" (alpha 1): the picture's cosine with the words just below zero, no label part.
    why = Explanation(
        score=-0.0002,
        picture=-0.0002,
        labels=0.0,
        picture_cosine=-0.0002,
        labels_cosine=0.4,
        picture_weight=1.0,
        labels_weight=0.0,
        shares=(),
    )
    bar = why_bar(why)
    assert "-0.000" not in bar
    assert '<span class="why-p">picture 0.000</span>' in bar
    assert '<span class="why-l">labels 0.000</span>' in bar
    assert '">0.000</b>' in bar and 'aria-label="Score 0.000: picture 0.000 + labels 0.000"' in bar
    assert "x cosine 0.000;" in bar


@pytest.mark.parametrize(
    "name",
    ["thumbnails/ab/abcdef0123.jpg", "bench/placeholder.jpg", "odd name/ä b#1.jpg", "a/../b.jpg"],
)
def test_a_cards_file_url_is_the_storages_own_for_default_storage_names(name):
    image = Image(file=name, thumbnail=name)
    assert file_url(image.thumbnail) == image.thumbnail.url == image.thumbnail.storage.url(name)
