"""The search page's explanations, emphasis, words left out and cut-off in a real browser
(Chromium through Playwright) against the live server: every card's split bar adds up to its
score, the "Rank by" slider moved to both ends reorders the results as the stored parts predict,
``beach -people`` leaves out the images labelled people and says so, and *Good matches only*
hides the results below the score calibrated on the library's own labels and says how many.

The library is embedded and indexed by this process (tests/factories.py). The tiny model's words
and pictures are unrelated (random weights): a words query's picture part is small and the label
part ranks, so the two ends of the slider disagree."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from search.calibration import cutoffs
from search.calibration.library import library_calibrate
from search.query import vectors as query_vectors
from tests.factories import indexed_library
from tests.search.query.scoring import alpha_score, hybrid_score

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SUBJECTS = ["beach", "zebra", "bicycle"]
SIZE = 24
# Shown under each card's bar: "picture 0.051 + labels 0.612" (every image here has labels); the
# score at the bar's end.
WHY_TEXT = re.compile(r"^picture (-?\d+\.\d{3})\s*\+\s*labels (-?\d+\.\d{3})$")
SCORE = re.compile(r"^-?\d+\.\d{3}$")
# The bar's title: "picture P = a x cosine C; labels L = b x cosine D".
WHY_TITLE = re.compile(
    r"^picture (-?\d+\.\d{3}) = (\d\.\d{2}) x cosine (-?\d\.\d{3}); "
    r"labels (-?\d+\.\d{3}) = (\d\.\d{2}) x cosine (-?\d\.\d{3})$"
)


def _specs() -> list[tuple[int, list[str]]]:
    """Eight pictures per subject, some also labelled people."""
    return [(300 + n, [SUBJECTS[n % 3]] + (["people"] if n % 3 == (n // 3) % 3 else [])) for n in range(SIZE)]


@pytest.fixture
def library() -> dict[str, list[int]]:
    return indexed_library(_specs())


def _only(library: dict[str, list[int]], label: str) -> set[int]:
    """The images labelled ``label`` and nothing else."""
    return set(library[label]) - set(library["people"])


def _search(page, base: str, text: str) -> None:
    page.goto(f"{base}/")
    page.fill("#q", text)
    with page.expect_navigation():
        page.press("#q", "Enter")


def _ids(page) -> list[int]:
    return [
        int(pk) for pk in page.locator(".grid .card").evaluate_all("cards => cards.map(c => c.dataset.id)")
    ]


def _parts(card) -> tuple[Decimal, Decimal, Decimal]:
    """(picture, labels, score) as the card shows them."""
    found = WHY_TEXT.match(card.locator(".why-text").inner_text().strip())
    assert found, card.locator(".why-text").inner_text()
    score = card.locator(".why-row .score-value").inner_text().strip()
    assert SCORE.match(score), score
    shown = (*found.groups(), score)
    assert "-0.000" not in shown, shown  # nothing is "less than zero" by rounding
    return tuple(Decimal(value) for value in shown)


def _move_slider(page, key: str) -> None:
    """Move the "Rank by" slider with the keyboard, as a person would, and wait for the results."""
    page.focus("#alpha")
    with page.expect_navigation():
        page.keyboard.press(key)


def test_every_card_splits_its_score_into_picture_and_labels_that_add_up(
    live_server, library, page, screenshot
):
    _search(page, live_server.url, "zebra")
    query = query_vectors.query_vector_for_text(text="zebra")
    cards = page.locator(".grid .card")
    assert cards.count() == SIZE
    shown_scores = []
    for card in cards.all():
        pk = int(card.get_attribute("data-id"))
        bar = card.locator(".why .why-bar")
        assert bar.count() == 1
        assert card.locator(".why-bar .why-picture").count() == 1
        assert card.locator(".why-bar .why-labels").count() == 1
        picture, labels, score = _parts(card)
        assert picture + labels == score, (pk, picture, labels, score)
        for part in (".why-p", ".why-l"):  # "labels" never wraps away from its number
            assert card.locator(part).evaluate("e => e.getClientRects().length") == 1, (pk, part)
        # The score shown is the query's cosine with the stored hybrid (recomputed here).
        assert float(score) == pytest.approx(hybrid_score(query, pk), abs=0.0011)
        # Each segment is as wide as its part, of the whole bar (1 is the full width).
        width = bar.bounding_box()["width"]
        for segment, part in ((".why-picture", picture), (".why-labels", labels)):
            drawn = card.locator(f".why-bar {segment}").bounding_box()["width"] / width
            assert drawn == pytest.approx(max(float(part), 0.0), abs=0.011), (pk, segment)
        # Hovering shows where each part comes from: a weight times the query's cosine with the
        # picture, and with the labels.
        card.locator(".why").hover()
        title = WHY_TITLE.match(card.locator(".why").get_attribute("title"))
        assert title, card.locator(".why").get_attribute("title")
        p, a, cos_picture, lab, b, cos_labels = (float(value) for value in title.groups())
        assert (p, lab) == (float(picture), float(labels))
        assert cos_picture == pytest.approx(alpha_score(query, pk, 1.0), abs=0.0011)
        assert cos_labels == pytest.approx(alpha_score(query, pk, 0.0), abs=0.0011)
        assert a * cos_picture == pytest.approx(p, abs=0.01)
        assert b * cos_labels == pytest.approx(lab, abs=0.01)
        shown_scores.append(score)
    assert shown_scores == sorted(shown_scores, reverse=True)
    screenshot(page, "results-explained")


def test_the_slider_at_each_end_ranks_by_the_picture_then_by_the_labels(
    live_server, library, page, screenshot
):
    base = live_server.url
    _search(page, base, "zebra")
    indexed = _ids(page)
    assert page.inner_text("#alpha-value") == "as indexed"
    assert page.locator("#emphasis-hint").count() == 0
    query = query_vectors.query_vector_for_text(text="zebra")

    # All the way to "picture": the order of the pictures' own cosines with the words, whatever
    # their labels say.
    _move_slider(page, "End")
    assert re.search(r"\?q=zebra&alpha=1$", page.url), page.url
    assert page.input_value("#alpha") == "1"
    assert page.inner_text("#alpha-value") == "looks like"
    assert page.inner_text("#emphasis-hint") == (
        "Ranked 100 % by what the picture looks like and 0 % by what the labels say."
    )
    looks_like = _ids(page)
    assert looks_like == sorted(library["all"], key=lambda pk: -alpha_score(query, pk, 1.0))
    assert all(_parts(card)[1] == 0 for card in page.locator(".grid .card").all())
    screenshot(page, "results-looks-like")

    # All the way to "labels": the images labelled zebra alone first, then those labelled zebra
    # and people, whatever they look like.
    _move_slider(page, "Home")
    assert re.search(r"\?q=zebra&alpha=0$", page.url), page.url
    assert page.input_value("#alpha") == "0"
    assert page.inner_text("#alpha-value") == "labelled as"
    assert page.inner_text("#emphasis-hint") == (
        "Ranked 0 % by what the picture looks like and 100 % by what the labels say."
    )
    labelled_as = _ids(page)
    zebras = _only(library, "zebra")
    assert set(labelled_as[: len(zebras)]) == zebras
    assert set(labelled_as[len(zebras) : len(library["zebra"])]) == set(library["zebra"]) - zebras
    assert all(_parts(card)[0] == 0 for card in page.locator(".grid .card").all())
    assert looks_like != labelled_as
    screenshot(page, "results-labelled-as")

    # Reset: the stored hybrids rank again.
    with page.expect_navigation():
        page.click(".emphasis-reset")
    assert page.url == f"{base}/?q=zebra"
    assert _ids(page) == indexed
    assert page.locator("#emphasis-hint").count() == 0


def test_a_word_left_out_in_the_box_drops_its_images_and_the_page_says_so(
    live_server, library, page, screenshot
):
    _search(page, live_server.url, "beach -people")
    assert page.input_value("#q") == "beach -people"
    labels = [
        set(t.split(", "))
        for t in page.locator(".grid .card .thumb img").evaluate_all("i => i.map(e => e.alt)")
    ]
    assert len(labels) == SIZE - len(library["people"])
    assert not any("people" in card for card in labels)
    beaches = _only(library, "beach")
    assert set(_ids(page)[: len(beaches)]) == beaches
    assert page.inner_text("#excluded") == (
        "Leaving out “people”: the results move away from it, and images labelled so are not shown."
    )
    screenshot(page, "results-excluded")


def test_good_matches_only_hides_the_weaker_results_and_says_how_many(live_server, library, page, screenshot):
    library_calibrate()
    found = cutoffs.cutoff("text", 0.8)
    assert found.threshold is not None, found.reason
    threshold = found.threshold
    _search(page, live_server.url, "zebra")
    everything = [_parts(card)[2] for card in page.locator(".grid .card").all()]
    assert len(everything) == SIZE
    assert not page.is_checked("#good")

    with page.expect_navigation():
        page.check("#good")
    assert page.url.endswith("?q=zebra&good=1"), page.url
    assert page.is_checked("#good")
    kept = [_parts(card)[2] for card in page.locator(".grid .card").all()]
    hidden = SIZE - len(kept)
    assert 0 < len(kept) < SIZE
    assert kept == everything[: len(kept)]
    assert all(float(score) >= threshold - 0.0005 for score in kept)
    assert all(float(score) < threshold + 0.0005 for score in everything[len(kept) :])
    assert page.inner_text("#cutoff") == (
        f"Good matches only: {hidden} weaker result{'s' if hidden != 1 else ''} hidden here"
        f" (score below {threshold:.3f}). The estimate comes from this library's own labels:"
        " of the results scoring at least that, about 80 % were right."
    )
    screenshot(page, "results-good-matches")

    # Unticked: everything again.
    with page.expect_navigation():
        page.uncheck("#good")
    assert page.url.endswith("?q=zebra"), page.url
    assert len(_ids(page)) == SIZE
    assert page.locator("#cutoff").count() == 0
