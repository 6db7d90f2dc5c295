"""The Content-Security-Policy of the pages: every page (search, image, admin, API docs) carries
one that allows scripts, styles and images from this site only, and nothing the templates render
needs an exception to it (no inline script, style or event handler). Stored media keep their own,
stricter policy. tests/browser/ checks in Chromium that no page violates it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client

from gallery.models import Image
from tests.support.constants import ROOT, UPLOAD_URL

pytestmark = pytest.mark.django_db

STATUS = "/admin/search/indexstate/status/"

EXPECTED = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:", "blob:"},  # the search box's preview of a dropped picture
    "object-src": {"'none'"},
    "base-uri": {"'self'"},
    "form-action": {"'self'"},
    "frame-ancestors": {"'none'"},
}


def _policy(response) -> dict[str, set[str]]:
    header = response.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.request['PATH_INFO']}"
    directives: dict[str, set[str]] = {}
    for part in header.split(";"):
        if part.strip():
            name, *sources = part.split()
            directives[name] = set(sources)
    return directives


class _InlineCode(HTMLParser):
    """Collects what a policy without 'unsafe-inline' refuses: inline scripts and styles, style
    attributes, event-handler attributes and javascript: links."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        text = self.get_starttag_text() or tag
        if tag == "style":
            self.found.append(text)
        if tag == "script":
            kind = dict(attrs).get("type") or "text/javascript"
            # A JSON data block (the API docs' settings) is data, not code: no policy applies.
            self._inline_script = "src" not in names and "json" not in kind
        if "style" in names or any(name.startswith("on") for name in names):
            self.found.append(text)
        if any((value or "").strip().lower().startswith("javascript:") for _, value in attrs):
            self.found.append(text)

    def handle_data(self, data: str) -> None:
        if self._inline_script and data.strip():
            self.found.append(f"<script>{data.strip()[:80]}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._inline_script = False


def _inline_code(html: str) -> list[str]:
    parser = _InlineCode()
    parser.feed(html)
    parser.close()
    return parser.found


@pytest.fixture
def pages(library, staff_client) -> list[tuple[Client, str]]:
    """Every kind of page the application renders, with a client allowed to open it."""
    pk = library["sunset"][0]
    return [
        (Client(), "/"),
        (Client(), "/?q=sunset"),
        (Client(), f"/?like={pk}"),
        (Client(), "/?label=zebra"),
        (Client(), f"/image/{pk}/"),
        (Client(), "/admin/login/"),
        (Client(), "/api/docs"),
        (staff_client, "/"),
        (staff_client, f"/image/{pk}/"),
        (staff_client, "/admin/"),
        (staff_client, UPLOAD_URL),
        (staff_client, STATUS),
        (staff_client, "/admin/gallery/image/"),
        (staff_client, f"/admin/gallery/image/{pk}/change/"),
        (staff_client, "/admin/gallery/label/"),
    ]


def test_every_page_carries_the_policy(pages):
    for client, url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert _policy(response) == EXPECTED, url


def test_the_policy_allows_no_inline_code_nor_eval(client):
    header = client.get("/")["Content-Security-Policy"]
    assert "unsafe-" not in header  # neither 'unsafe-inline', 'unsafe-eval' nor 'unsafe-hashes'
    assert "nonce-" not in header and "sha256-" not in header


def test_no_page_renders_inline_script_or_style(pages):
    for client, url in pages:
        html = client.get(url).content.decode()
        assert _inline_code(html) == [], url


def test_no_template_holds_inline_script_or_style():
    # Covers the templates no request above renders (the refusal page, the branches not taken).
    inline = re.compile(r"<style|\sstyle=|\son[a-z]+=|<script(?![^>]*\ssrc=)|javascript:", re.IGNORECASE)
    for template in sorted((ROOT / "templates").rglob("*.html")):
        for number, line in enumerate(template.read_text().splitlines(), start=1):
            assert not inline.search(line), f"{template.relative_to(ROOT)}:{number}: {line.strip()}"


def test_stored_media_keep_their_stricter_policy(library):
    image = Image.objects.get(pk=library["sunset"][0])
    for url in (image.file.url, image.thumbnail.url):
        assert Client().get(url)["Content-Security-Policy"] == "default-src 'none'; sandbox"


def test_the_admin_previews_are_styled_from_a_stylesheet(staff_client, library):
    # The previews' sizes once were inline styles; the policy would refuse them.
    html = staff_client.get("/admin/gallery/image/").content.decode()
    assert 'class="image-preview"' in html
    assert "/static/css/admin-extra.css" in html
