"""A query's links ask the same query again, changed where asked, as ``urlencode`` writes them."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlencode

import pytest

from search.query.queries import SearchQuery

QUERIES = [
    SearchQuery(),
    SearchQuery(text="héllo wörld & <x> +1 %20 /?#"),
    SearchQuery(
        text="a -b",
        labels=("x y", "ä&"),
        sort="date",
        exclude=("e f",),
        alpha=0.25,
        min_precision=0.8,
        image_token="ab" * 16,
        image_weight=0.3,
    ),
    SearchQuery(like=5, min_precision=0.9),
]
CHANGES = [{}, {"labels": ("new", "z z")}, {"sort": "date"}, {"alpha": None}, {"alpha": 1.0}, {"labels": ()}]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("changes", CHANGES)
@pytest.mark.parametrize("page", [1, 3])
def test_a_querys_url_is_the_changed_querys_parameters_urlencoded(query, changes, page):
    changed = replace(query, **changes)
    params = changed.params() + ([("page", str(page))] if page > 1 else [])
    assert query.url(page=page, **changes) == "?" + urlencode(params)
    assert query.params(**changes) == changed.params()


def test_a_change_to_a_field_a_query_does_not_have_is_refused():
    with pytest.raises(TypeError, match="no field colour"):
        SearchQuery(text="x").url(colour="red")


def test_a_querys_kind_words_and_terms_left_out_follow_its_text_when_replaced():
    query = SearchQuery(text="red -cat")
    assert (query.kind, query.words, query.excluded) == ("text", "red", ("cat",))
    other = replace(query, text="-dog", labels=("sky",))
    assert (other.kind, other.words, other.excluded) == ("browse", "", ("dog",))
