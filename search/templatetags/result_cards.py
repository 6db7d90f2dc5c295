"""``{% result_grid hits start %}``: a results grid, rendered in Python.

Rendering a grid of 24 results was the largest part of a search request besides the model
(BENCHMARKS.md): through the template engine each card cost a dozen variable lookups and
escapes, and its labels, URLs and numbers were worked out more than once. Here each card's
strings are prepared once (:func:`cards`) and the HTML is joined from them, every value
escaped.

A card's own work is most of what is left: its values are plain strings, so they are escaped
without Django's check for lazy strings (the same characters), and a thumbnail's URL on the file
system storage is its base URL and the generated file name, which needs no quoting or joining.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass

from django import template
from django.core.files.storage import FileSystemStorage
from django.urls import reverse
from django.utils.functional import LazyObject, empty
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

_SENTINEL = 987654321  # an id no real URL contains, replaced by each image's own
# A stored name that a URL carries as it is (generated names: folders, a hash, an extension).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*\.[A-Za-z0-9]+")


_SPECIAL = re.compile("[&<>\"']")


def escape(value: object) -> str:
    """``django.utils.html.escape`` of a plain value: the same five characters escaped (most
    values of a page have none of them: those are returned as they are, at the cost of a scan)."""
    text = str(value)
    return html.escape(text) if _SPECIAL.search(text) else text


def _unwrapped(storage):
    """The storage itself: a field's default storage is ``default_storage``, a lazy wrapper
    (whose type is not the storage's, and whose every attribute read goes through the wrapper)."""
    if isinstance(storage, LazyObject):
        if storage._wrapped is empty:
            storage._setup()
        return storage._wrapped
    return storage


def file_url(file) -> str:
    """``file.url``; on the file system storage a generated name is joined to the base URL as
    the storage would join it (its quoting and ``urljoin`` leave such a name as it is)."""
    storage = _unwrapped(file.storage)
    name = file.name
    if type(storage) is FileSystemStorage and name and _PLAIN_NAME.fullmatch(name):
        return storage.base_url + name
    return file.url


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
    why: SafeString  # the split bar of the score's picture and label parts ("" without one)
    more_url: str


def cards(hits: Iterable) -> list[Card]:
    detail = reverse("image_detail", args=[_SENTINEL])
    more = reverse("search") + "?like="
    out = []
    for hit in hits:
        image = hit.image
        pk = str(image.pk)
        labels = image.label_names
        thumbnail = image.thumbnail
        source = thumbnail if thumbnail else image.file
        score = hit.score
        out.append(
            Card(
                pk=pk,
                url=detail.replace(str(_SENTINEL), pk),
                src=file_url(source),
                labels=labels,
                labels_text=", ".join(labels),
                width=str(image.width),
                height=str(image.height),
                score=None if score is None else shown(score),
                why=why_bar(hit.why) if hit.why is not None else SafeString(""),
                more_url=more + pk,
            )
        )
    return out


def shown(value: float) -> str:
    """A number as a card shows it: 3 decimals, and a value that rounds to zero without a minus
    sign (a part or a score just below zero is no less than zero to a reader)."""
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def shown_parts(why) -> tuple[str, str, str]:
    """The picture part, the label part and the score as the card shows them (3 decimals), the
    label part rounded so that the two parts shown add up to the score shown."""
    score = round(why.score, 3)
    picture = round(why.picture, 3)
    return shown(picture), shown(score - picture), shown(score)


def _width(value: float) -> int:
    """A bar segment's width class: 0-100 in steps of 2 (the page's style sheet allows no inline
    styles)."""
    return 2 * round(50 * min(max(value, 0.0), 1.0))


def why_bar(why) -> SafeString:
    """The score as a bar split into its picture part and its label part, with the numbers."""
    picture, labels, score = shown_parts(why)
    if why.labels_cosine is None:
        label_text = "no labels"
        detail = f"picture {picture} = cosine {shown(why.picture_cosine)} (the image has no labels)"
    else:
        label_text = f"labels {labels}"
        detail = (
            f"picture {picture} = {why.picture_weight:.2f} x cosine {shown(why.picture_cosine)}; "
            f"labels {labels} = {why.labels_weight:.2f} x cosine {shown(why.labels_cosine)}"
        )
    shares = ""
    if why.shares:
        detail += "; " + "; ".join(
            f"{part.name}: picture {part.picture:.3f}, labels {part.labels:.3f}" for part in why.shares
        )
        shares = (
            '<span class="why-shares">'
            + " · ".join(f"{escape(part.name)} {part.picture + part.labels:+.3f}" for part in why.shares)
            + "</span>"
        )
    return SafeString(  # every value is a number or escaped
        f'<div class="why" title="{escape(detail)}">'
        f'<span class="why-row"><span class="why-bar" aria-hidden="true">'
        f'<span class="why-picture w{_width(why.picture)}"></span>'
        f'<span class="why-labels w{_width(why.labels)}"></span></span>'
        f'<b class="score-value" aria-label="Score {score}: picture {picture} + {label_text}">'
        f"{score}</b></span>"
        f'<span class="why-text"><span class="why-p">picture {picture}</span> + '
        f'<span class="why-l">{label_text}</span></span>{shares}</div>'
    )


@register.simple_tag
def result_grid(hits: Iterable, start: int | None = None) -> SafeString:
    """The grid of ``hits`` as an ordered list (``start``: the rank of the first, on later pages)."""
    parts = [f'<ol class="grid" start="{start}">' if start else '<ol class="grid">']
    for card in cards(hits):
        labels_text = escape(card.labels_text)
        tags = "".join(f"<li>{escape(name)}</li>" for name in card.labels)
        score = card.why
        if card.score is not None and not score:
            score = (
                '<div class="score" title="Cosine similarity to the query (1 is identical)">'
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
