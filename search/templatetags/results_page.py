"""``{% results_page %}``: what the search page shows of a page of results (notices, the title
and sort links, the label chips, the hints, the grid and the pager), rendered in Python.

Through the template engine this part of a results page cost more than half a millisecond
besides the grid (BENCHMARKS.md): dozens of lookups, conditions and filters. Here it is one
string built from the context the view gives (``query``, ``page``, ``links``, ``chips``), every
value escaped as the template engine escapes it, and the HTML the same as the template's was,
character for character (the tests of the search page read it).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.defaultfilters import floatformat, pluralize
from django.urls import reverse
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from .result_cards import escape, result_grid

register = template.Library()


def label_chips(chips: list[Any]) -> str:
    """The label chips (``search.query.queries.Chip``): an active one removes its filter, the
    others narrow the query to their label."""
    parts = []
    for chip in chips:
        name = escape(chip.name)
        if chip.active:
            parts.append(
                f'<a class="chip active" href="{escape(chip.url)}" aria-pressed="true"'
                f' title="Remove this filter">{name} <span aria-hidden="true">×</span></a>'
            )
        else:
            parts.append(
                f'<a class="chip" href="{escape(chip.url)}" aria-pressed="false"'
                f' title="Only images labelled {name}">{name}</a>'
            )
    return "".join(parts)


def _title(query: Any) -> str:
    kind = query.kind
    if kind == "like":
        url = escape(reverse("image_detail", args=[query.like]))
        return f'Images like <a href="{url}">#{escape(query.like)}</a>\n      '
    if kind == "hybrid":
        return f"Your image and “{escape(query.text)}”\n      "
    if kind == "image":
        return "Images like yours\n      "
    if kind == "browse":
        if query.labels:
            return "Labelled " + " and ".join(f"“{escape(name)}”" for name in query.labels) + "\n      "
        return "Newest images\n      "
    return f"Results for “{escape(query.text)}”"


def _hints(query: Any, page: Any) -> list[str]:
    """The hint lines under the chips: terms left out, the cut-off, the emphasis, the date sort
    (an empty line where one does not apply, as the template left it)."""
    excluded = query.excluded
    lines = [""] * 4
    if excluded:
        terms = ", ".join(f"“{escape(term)}”" for term in excluded)
        if query.kind == "browse":
            tail = "images labelled so are not shown."
        else:
            tail = (
                f"the results move away from {pluralize(len(excluded), 'it,them')},"
                " and images labelled so are not shown."
            )
        lines[0] = f'<p class="hint excluded" id="excluded">Leaving out {terms}: {tail}</p>'
    cutoff = page.cutoff
    if cutoff is not None and cutoff.threshold is not None:
        hidden = page.hidden
        lines[1] = (
            f'<p class="hint" id="cutoff">Good matches only: {escape(hidden)} weaker'
            f" result{pluralize(hidden)} hidden here (score below"
            f" {escape(floatformat(cutoff.threshold, 3))}). The estimate comes from this library's own"
            " labels: of the results scoring at least that, about"
            f" {round(float(cutoff.level) / 1.0 * 100)} % were right.</p>"
        )
    if query.alpha is not None:
        lines[2] = (
            f'<p class="hint" id="emphasis-hint">Ranked {escape(query.alpha_percent)} % by what the'
            f" picture looks like and {escape(query.labels_percent)} % by what the labels say.</p>"
        )
    if query.sort == "date" and query.kind != "browse":
        lines[3] = (
            '<p class="hint">Newest first (by the date taken, else the upload date), among the best'
            " matches.</p>"
        )
    return lines


def _hits(query: Any, page: Any, links: Any) -> str:
    if page.hits:
        previous = (
            f'<a rel="prev" href="{escape(links.get("prev", ""))}">← Previous</a>'
            if links.get("prev")
            else "<span></span>"
        )
        following = (
            f'<a rel="next" href="{escape(links.get("next", ""))}">Next →</a>'
            if links.get("next")
            else "<span></span>"
        )
        return (
            f"\n    {result_grid(page.hits, page.start_rank)}\n\n"  # the grid's template ended a line
            '    <nav class="pager" aria-label="Result pages">\n'
            f"      {previous}\n"
            f'      <span class="page-number">Page {escape(page.page)}</span>\n'
            f"      {following}\n"
            "    </nav>\n  "
        )
    if page.page > 1:
        empty = (
            f'<p>No more results. <a href="{escape(links.get("relevance", ""))}">Back to the first'
            " page</a>.</p>\n      "
        )
    else:
        advice = (
            "Remove a label filter, or try other words."
            if query.labels
            else "Try other words, or another image."
        )
        empty = f"<p><strong>No images match.</strong> {advice}</p>"
    return f'\n    <div class="empty" role="status">\n      {empty}\n    </div>\n  '


@register.simple_tag(takes_context=True)
def results_page(context: template.Context) -> SafeString:
    """A page of results (``page``, a ``search.query.ranking.ResultPage``) for ``query``."""
    query, page = context["query"], context["page"]
    links: Any = context.get("links") or {}
    chips = context.get("chips")
    sort = ""
    if query.kind != "browse":
        relevance = ' aria-current="true"' if query.sort == "relevance" else " "
        date = ' aria-current="true"' if query.sort == "date" else " "
        sort = (
            '\n    <nav class="sort" aria-label="Sort results">\n'
            f'      <a href="{escape(links.get("relevance", ""))}"{relevance}>Best match</a>\n'
            f'      <a href="{escape(links.get("date", ""))}"{date}>Newest</a>\n'
            "    </nav>\n    "
        )
    chips_html = (
        f'\n  <nav class="chips" aria-label="Filter by label">\n    {label_chips(chips)}\n  </nav>\n  '
        if chips
        else ""
    )
    notices = "".join(
        f'<p class="message notice" role="status">{conditional_escape(notice)}</p>' for notice in page.notices
    )
    hints = "\n  ".join(_hints(query, page))
    return mark_safe(  # noqa: S308 - every value above is escaped
        f"\n  {notices}\n"
        '  <div class="results-head">\n'
        '    <h1 class="results-title">\n'
        f"      {_title(query)}\n"
        "    </h1>\n"
        f"    {sort}\n"
        "  </div>\n"
        f"  {chips_html}\n"
        f"  {hints}\n"
        f"  {_hits(query, page, links)}\n"
    )
