"""Bad and awkward queries on the search page and the JSON API: each answers results, a page that
says what was wrong, or a 4xx with a JSON error; never a 500, and what the query said is escaped
wherever it is shown again. (Query images are in tests/gallery/test_bad_uploads.py.)"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gallery.models import Image
from search.query.queries import MAX_QUERY_TEXT_LENGTH

pytestmark = pytest.mark.django_db

LONG_TEXT = " ".join(["sunset"] + ["glowing orange evening sky over the quiet sea"] * 20)  # ~180 tokens


@pytest.mark.parametrize(
    "params",
    [
        {"q": LONG_TEXT},  # longer than CLIP's 77 tokens: cut, not an error
        {"q": "🌅 🚲 🦓"},
        {"q": "غروب الشمس"},  # right to left
        {"q": "sunset \u202e\u200f\u200b"},  # bidi overrides, zero-width space
        {"q": "sun\tset\x1b[31m\x07\x7f"},  # control characters
        {"q": "sunset", "page": "5"},  # past the last result: an empty page
        {"label": "<b>zebra</b>"},  # a label nobody has
    ],
    ids=["long", "emoji", "rtl", "bidi", "control", "page-past-the-end", "unknown-label"],
)
def test_awkward_queries_answer_a_results_page(library, client, params):
    page = client.get("/", params)
    assert page.status_code == 200
    assert page.context["error"] is None


@pytest.mark.parametrize(
    "params, status, message",
    [
        ({"q": "s" * 1_048_576}, 400, "at most 1000 characters"),  # 1 MB of text
        ({"q": "sun\x00set"}, 400, "Null characters are not allowed"),
        ({"q": "sunset", "page": "0"}, 400, "page: Ensure this value is greater than or equal to 1"),
        ({"q": "sunset", "page": "-3"}, 400, "greater than or equal to 1"),
        ({"q": "sunset", "page": "9" * 40}, 400, "less than or equal to 10000"),
        ({"q": "sunset", "page": "two"}, 400, "Enter a whole number"),
        ({"q": "sunset", "page": "42"}, 400, "Results stop at 1000"),
        ({"like": "999999"}, 404, "That image does not exist"),
        ({"like": "0"}, 400, "greater than or equal to 1"),
        ({"like": str(2**63)}, 400, "less than or equal to"),
        ({"like": "1 OR 1=1"}, 400, "Enter a whole number"),
        ({"qimg": "../../etc/passwd"}, 400, "qimg: Enter a valid value"),
        ({"qimg": "0" * 32}, 404, "expired"),
        ({"q": "x", "w": "7"}, 400, "less than or equal to 1.0"),
        ({"q": "x", "sort": "'; drop table"}, 400, "Select a valid choice"),
        ({"label": [f"l{i}" for i in range(11)]}, 400, "at most 10 labels"),
    ],
    ids=[
        "1MB",
        "nul",
        "page-0",
        "page-negative",
        "page-huge",
        "page-text",
        "page-past-1000-results",
        "like-missing",
        "like-0",
        "like-overflow",
        "like-injection",
        "qimg-traversal",
        "qimg-unknown",
        "weight-out-of-range",
        "sort-unknown",
        "too-many-labels",
    ],
)
def test_bad_queries_answer_a_page_that_says_what_was_wrong(library, client, params, status, message):
    page = client.get("/", params)
    assert page.status_code == status
    assert message in page.context["error"]
    assert message.split(":")[0] in page.content.decode()


@pytest.mark.parametrize(
    "params, status, message",
    [
        ({"text": "s" * 1_048_576}, 400, "at most 1000 characters"),
        ({"text": "sunset", "k": 0}, 400, "k: Input should be greater than or equal to 1"),
        ({"text": "sunset", "k": 201}, 400, "k: Input should be less than or equal to 200"),
        ({"text": "sunset", "offset": -1}, 400, "offset"),
        ({"text": "sunset", "offset": 1000}, 400, "offset"),
        ({"text": "sunset", "offset": "many"}, 400, "offset"),
        ({"image_id": 999999}, 404, "That image does not exist"),
        ({"image_id": -4}, 400, "image_id"),
        ({"image_token": "0" * 32}, 404, "expired"),
        ({"text": "x", "weight": 2}, 400, "weight"),
        ({"labels": [f"l{i}" for i in range(11)]}, 400, "labels"),
    ],
    ids=[
        "1MB",
        "k-0",
        "k-201",
        "offset-negative",
        "offset-past-1000",
        "offset-text",
        "image-missing",
        "image-negative",
        "token-unknown",
        "weight",
        "too-many-labels",
    ],
)
def test_bad_api_queries_are_a_4xx_with_a_json_error(library, client, params, status, message):
    response = client.get("/api/search", params)
    assert response.status_code == status
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    "text",
    [LONG_TEXT[:1000], "🌅", "غروب الشمس", "sun\x00set\x1b", "   ", ""],
    ids=["long", "emoji", "rtl", "control-and-nul", "whitespace", "empty"],
)
def test_awkward_api_queries_answer_results(library, client, text):
    response = client.get("/api/search", {"text": text})
    assert response.status_code == 200
    assert len(response.json()["results"]) == len(library["all"])


def test_a_text_longer_than_clip_reads_is_cut_not_refused(library, client):
    # Words past CLIP's 77 tokens are cut, so they change nothing.
    page = client.get("/", {"q": LONG_TEXT}).context["page"]
    more = client.get("/", {"q": LONG_TEXT + " zebra bicycle" * 5}).context["page"]  # 996 characters
    assert [(h.image.pk, h.score) for h in page.hits] == [(h.image.pk, h.score) for h in more.hits]
    assert len(page.hits) == len(library["all"])


def test_the_page_and_the_api_accept_the_same_longest_text(library, client):
    longest = ("sunset " * 200)[:MAX_QUERY_TEXT_LENGTH]
    assert client.get("/", {"q": longest}).status_code == 200
    assert client.get("/api/search", {"text": longest}).status_code == 200
    assert client.get("/", {"q": longest + "s"}).status_code == 400
    assert client.get("/api/search", {"text": longest + "s"}).status_code == 400


def test_empty_and_whitespace_queries_show_the_start_page(library, client):
    for q in ("", "    ", "\t\n"):
        page = client.get("/", {"q": q})
        assert page.status_code == 200
        assert page.context["page"] is None and page.context["error"] is None


def test_html_in_a_query_is_escaped_wherever_it_is_shown(library, client):
    attack = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    for params in ({"q": attack}, {"q": "sunset", "label": attack}):
        html = client.get("/", params).content.decode()
        assert "<script>alert(1)</script>" not in html
        assert "<img src=x onerror" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@hypothesis_settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    q=st.text(max_size=300),
    page=st.one_of(st.none(), st.integers(-5, 50).map(str), st.text(max_size=5)),
    like=st.one_of(st.none(), st.integers(-(2**64), 2**64).map(str)),
)
def test_fuzzed_queries_never_fail_with_a_500(library, client, q, page, like):
    params = {"q": q, **({"page": page} if page is not None else {}), **({"like": like} if like else {})}
    response = client.get("/", params)
    assert response.status_code in (200, 400, 404), response.content[:300]
    if response.status_code != 200:
        assert response.context["error"]
    api = client.get("/api/search", {"text": q, **({"image_id": like} if like else {})})
    assert api.status_code in (200, 400, 404), api.content[:300]
    if api.status_code != 200:
        assert api.json()["error"]
    assert Image.objects.count() == len(library["all"])  # a query never writes
