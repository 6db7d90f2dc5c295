"""The admin says what it is: "Image search" in its header and in every page's title, never
Django's "Django administration" or "Django site admin"."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def _title(html: str) -> str:
    return " ".join(re.search(r"<title>(.*?)</title>", html, re.S).group(1).split())


def _header(html: str) -> str:
    found = re.search(r'<div id="site-name">\s*<a [^>]*>(.*?)</a>', html, re.S)
    return found.group(1).strip() if found else ""


@pytest.mark.parametrize(
    "path, title",
    [
        ("/admin/", "Library | Image search"),
        ("/admin/gallery/image/", "Select image to change | Image search"),
        ("/admin/search/indexstate/status/", "Index status | Image search"),
    ],
)
def test_admin_pages_are_titled_and_headed_image_search(staff_client, path, title):
    html = staff_client.get(path).content.decode()
    assert _title(html) == title
    assert _header(html) == "Image search"
    assert "Django administration" not in html and "Django site admin" not in html


def test_the_admin_sign_in_page_is_titled_and_headed_image_search(client):
    html = client.get("/admin/login/").content.decode()
    assert _title(html) == "Log in | Image search"
    assert _header(html) == "Image search"
    assert "Django administration" not in html and "Django site admin" not in html
