"""``{% search_box %}``: the search box of the search and image pages, rendered in Python.

After the result grid (:mod:`search.templatetags.result_cards`), it was the largest part of
rendering a results page through the template engine (about 0.2 ms at 10k, BENCHMARKS.md):
dozens of lookups, conditions and escapes a request. Here it is one string built from the
query, every value escaped as the template engine escapes it; the HTML is the same as the
template's was, character for character (the tests of the search page read it).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.templatetags.static import static
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from .result_cards import escape

register = template.Library()

_PICK_ICON = (
    '<svg aria-hidden="true" width="22" height="22" viewBox="0 0 24 24" fill="none" stroke="currentColor"'
    ' stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><rect x="3" y="5" width="18"'
    ' height="14" rx="2"/><circle cx="9" cy="10" r="2"/><path d="m21 16-5-5-9 8"/></svg>'
)


def _g(value: object) -> str:
    """``value|stringformat:'g'``."""
    return "%g" % value  # noqa: UP031 - the template filter's own formatting


def _csrf_input(context: template.Context) -> str:
    """``{% csrf_token %}``: the hidden field with the request's token, none without one."""
    token = context.get("csrf_token")
    if not token or token == "NOTPROVIDED":
        return ""
    return f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(token)}">'


@register.simple_tag(takes_context=True)
def search_box(context: template.Context) -> SafeString:
    """The search form: words, an image, the remembered query image, the filters kept as hidden
    fields, the words/image weight and, on a results page, the emphasis slider."""
    query = context["query"]
    formats: Any = context.get("query_image_formats") or {}
    token = escape(query.image_token)
    alpha = query.alpha
    lines = [
        "",  # the partial template's first line ({% load static %}) left an empty line
        f'<form id="search-form" class="searchbox" method="post" action="{escape(reverse("search"))}"'
        f' enctype="multipart/form-data" role="search" data-qimg="{token}" data-url="{escape(query.url())}">',
        f"  {_csrf_input(context)}",
        '  <div class="search-row" id="dropzone">',
        '    <label for="q" class="visually-hidden">Search words</label>',
        f'    <input id="q" name="q" type="search" value="{escape(query.text)}"'
        ' placeholder="Search by words, or drop an image" autocomplete="off" enterkeyhint="search"'
        f' maxlength="{escape(query.max_text_length)}">',
        f'    <div class="query-image" id="query-image" {"" if query.image_token else "hidden"}>',
        '      <img id="query-image-preview" alt="Your search image"'
        f' src="{escape(static("img/image-query.svg"))}" width="40" height="40">',
        '      <button type="button" id="image-clear" class="icon-button"'
        ' aria-label="Remove the search image" title="Remove the search image">×</button>',
        "    </div>",
        '    <input id="image" name="image" type="file" class="file-input" aria-label="Search with an image"'
        f' accept="{escape(formats.get("accept", ""))}"'
        f' data-formats="{escape(formats.get("description", ""))}">',
        '    <label for="image" class="pick" title="Search with an image from your device">',
        f"      {_PICK_ICON}",
        '      <span class="pick-text">Image</span>',
        "    </label>",
        '    <button type="submit" class="go">Search</button>',
        "  </div>",
        "  " + (f'<input type="hidden" name="qimg" id="qimg" value="{token}">' if query.image_token else ""),
        "  " + "".join(f'<input type="hidden" name="label" value="{escape(name)}">' for name in query.labels),
        "  "
        + (
            f'<input type="hidden" name="sort" value="{escape(query.sort)}">'
            if query.sort != "relevance"
            else ""
        ),
        "  "
        + "".join(f'<input type="hidden" name="exclude" value="{escape(term)}">' for term in query.exclude),
        f'  <div class="weight" id="weight" {"" if query.kind == "hybrid" else "hidden"}>',
        '    <span aria-hidden="true">Words</span>',
        '    <input type="range" id="w" name="w" min="0" max="1" step="0.05"'
        f' value="{_g(query.image_weight)}" aria-label="Weight of the image against the words"'
        ' aria-valuetext="">',
        '    <span aria-hidden="true">Image</span>',
        f'    <output id="w-value" for="w">{_g(query.image_weight)}</output>',
        "  </div>",
    ]
    if context.get("page"):
        links: Any = context.get("links") or {}
        reset = (
            f'<a class="emphasis-reset" href="{escape(links.get("emphasis_reset", ""))}">Reset</a>'
            if alpha is not None
            else ""
        )
        lines += [
            "  ",
            '  <div class="emphasis" id="emphasis">',
            '    <label for="alpha">Rank by</label>',
            '    <span aria-hidden="true">labels</span>',
            '    <input type="range" id="alpha" min="0" max="1" step="0.05"'
            f' value="{_g(alpha if alpha is not None else query.default_alpha)}"'
            ' aria-describedby="alpha-help" aria-valuetext="">',
            '    <span aria-hidden="true">picture</span>',
            '    <output id="alpha-value" for="alpha">'
            f"{escape(query.emphasis_text) if alpha is not None else 'as indexed'}</output>",
            f"    {reset}",
            '    <span id="alpha-help" class="visually-hidden">Left: rank by what the labels say; right: by'
            " what the picture looks like.</span>",
            '    <label class="good-only"><input type="checkbox" id="good" name="good" value="1"'
            f" {'checked' if query.min_precision is not None else ''}> Good matches only</label>",
            "  </div>",
        ]
    lines += [
        "  ",
        '  <p class="drop-hint" id="drop-hint">Drop or paste an image anywhere on the page to find similar'
        " ones; add words to mix both.</p>",
        '  <p id="search-status" class="status" role="status" aria-live="polite"></p>',
        '  <div class="drop-overlay" id="drop-overlay" hidden><p>Drop the image to search with it</p></div>',
        "</form>",
        "",
    ]
    return mark_safe("\n".join(lines))  # noqa: S308 - every value above is escaped
