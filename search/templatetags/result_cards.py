"""``hits|cards``: what a results grid shows of each hit, computed once per hit in Python.

Rendering a grid of 24 results was the largest part of a search request besides the model
(BENCHMARKS.md): the template resolved each image's labels three times, reversed two URLs, asked
the storage for the thumbnail's URL and localised every number per card. The grid template now
reads plain strings prepared here, once each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django import template
from django.urls import reverse

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


@register.filter
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
