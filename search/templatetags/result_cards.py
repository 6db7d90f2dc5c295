"""``{% result_grid hits start %}``: a results grid, rendered in Python.

Rendering a grid of 24 results was the largest part of a search request besides the model
(BENCHMARKS.md): through the template engine each card cost a dozen variable lookups and
escapes, and its labels, URLs and numbers were worked out more than once. Here each card's
strings are prepared once (:func:`cards`) and the HTML is joined from them, every value
escaped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django import template
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

_SENTINEL = 987654321  # an id no real URL contains, replaced by each image's own


@dataclass(frozen=True)
class Card:
    pk: str
    url: str
    src: str
    labels: list[str]
    labels_text: str
    width: str
    height: str
    score: str | None  # 3 decimals, as shown
    score_exact: str | None  # 4 decimals, the meter's value
    more_url: str


def cards(hits: Iterable) -> list[Card]:
    detail = reverse("image_detail", args=[_SENTINEL])
    more = reverse("search") + "?like="
    out = []
    for hit in hits:
        image = hit.image
        pk = str(image.pk)
        labels = image.label_names
        source = image.thumbnail if image.thumbnail else image.file
        score = hit.score
        out.append(
            Card(
                pk=pk,
                url=detail.replace(str(_SENTINEL), pk),
                src=source.url,
                labels=labels,
                labels_text=", ".join(labels),
                width=str(image.width),
                height=str(image.height),
                score=None if score is None else f"{score:.3f}",
                score_exact=None if score is None else f"{score:.4f}",
                more_url=more + pk,
            )
        )
    return out


@register.simple_tag
def result_grid(hits: Iterable, start: int | None = None) -> SafeString:
    """The grid of ``hits`` as an ordered list (``start``: the rank of the first, on later pages)."""
    parts = [f'<ol class="grid" start="{start}">' if start else '<ol class="grid">']
    for card in cards(hits):
        labels_text = escape(card.labels_text)
        tags = "".join(f"<li>{escape(name)}</li>" for name in card.labels)
        score = ""
        if card.score is not None:
            score = (
                '<div class="score" title="Cosine similarity to the query (1 is identical)">'
                f'<meter min="0" max="1" low="0.2" high="0.5" optimum="1" value="{card.score_exact}"'
                f' aria-label="Similarity">{card.score}</meter>'
                f'<span class="score-value">{card.score}</span></div>'
            )
        parts.append(
            f'<li class="card" data-id="{card.pk}">'
            f'<a class="thumb" href="{escape(card.url)}" aria-label="Image {card.pk}: {labels_text}">'
            f'<img src="{escape(card.src)}" alt="{labels_text}" loading="lazy"'
            f' width="{card.width}" height="{card.height}"></a>'
            f'<div class="card-body"><ul class="tags" aria-label="Labels">{tags}</ul>{score}'
            f'<a class="more" href="{escape(card.more_url)}">More like this</a></div></li>'
        )
    parts.append("</ol>")
    return mark_safe("\n".join(parts))  # noqa: S308 - every value above is escaped
