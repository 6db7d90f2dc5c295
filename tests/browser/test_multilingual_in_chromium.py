"""Queries in the user's own language, typed into the search page in a real browser, with the
multilingual text model (tests/support/text_model.py) as IMAGESEARCH_TEXT_MODEL: the exact label
text in any script finds that label's images first; a query longer than the model reads, too."""

from __future__ import annotations

import unicodedata

import pytest

from tests.factories import create_indexed_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The accented label is stored decomposed (as macOS spells folder names) and typed composed.
LABELS = ["猫", "自転車", "غروب الشمس", "кошка", "roter Wu\u0308rfel", "👩\u200d💻", "bicicleta"]


def _card_labels(page) -> list[str]:
    return [t.strip() for t in page.locator(".grid .card .tags").all_inner_texts()]


def test_labels_in_any_script_typed_into_the_page_find_their_images_first(
    live_server, settings, text_model_dir, page, page_problems, screenshot
):
    settings.IMAGESEARCH_TEXT_MODEL = str(text_model_dir)
    create_indexed_images([(10 * n + k, [label]) for n, label in enumerate(LABELS) for k in (1, 2)])
    search = page
    for n, label in enumerate(LABELS):
        search.goto(f"{live_server.url}/")
        typed = unicodedata.normalize("NFC", label)
        search.fill("#q", typed)
        with search.expect_navigation():
            search.press("#q", "Enter")
        assert search.input_value("#q") == typed  # the query is kept, as typed
        shown = [unicodedata.normalize("NFC", t) for t in _card_labels(search)]
        assert shown[:2] == [typed, typed], (label, shown)
        if n == 0:
            screenshot(search, "results-words-cjk")

    # Past what the text model reads (128 tokens): cut, still answered.
    search.goto(f"{live_server.url}/")
    search.fill("#q", "猫 " + "犬" * 997)
    with search.expect_navigation():
        search.press("#q", "Enter")
    assert len(_card_labels(search)) == 2 * len(LABELS)
