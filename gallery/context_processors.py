"""What every page's templates may need from the gallery."""

from __future__ import annotations

from django.http import HttpRequest

from . import formats


def image_formats(request: HttpRequest) -> dict[str, object]:
    """The accepted image formats, for file pickers (``accept``) and the messages that name them:
    staff uploads (``image_formats``) and query images (``query_image_formats``). The search box's
    script reads them from the page, never from a copy of its own."""
    queries = formats.for_queries()
    return {
        "image_formats": {"accept": formats.file_input_accept(), "description": formats.description()},
        "query_image_formats": {
            "accept": formats.file_input_accept(queries),
            "description": formats.description(queries),
        },
    }
