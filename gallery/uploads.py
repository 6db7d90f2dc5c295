"""An upload as the admin page and the JSON API receive it: the form's files and zip archive,
stored through :func:`gallery.services.images_create`, and remembered as a batch that the
uploader can follow. Both entry points go through :func:`images_upload`, so they accept and
refuse the same things."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from .batches import batch_remember
from .forms import BulkUploadForm
from .importing import InvalidArchive, uploads_from_form
from .services import ImportResult, images_create


@dataclass(frozen=True)
class UploadBatch:
    result: ImportResult
    token: str  # follow it with gallery.batches.batch_status

    def as_json(self) -> dict[str, Any]:
        result = self.result
        return {
            "summary": result.summary(),
            "added": result.added,
            "duplicates": [{"name": name, "id": pk} for name, pk in result.duplicates],
            "refused": [{"name": name, "reason": reason} for name, reason in result.refused],
            "queued": result.queued,
        }


def images_upload(
    *, form: BulkUploadForm, uploaded_by: AbstractBaseUser | AnonymousUser | None
) -> UploadBatch | None:
    """Store the images of a bound upload form; None, with the errors on the form, when the form
    or its archive is invalid. Files refused one by one are reported in the batch's result."""
    if not form.is_valid():
        return None
    try:
        uploads = uploads_from_form(form.cleaned_data)
    except InvalidArchive as exc:
        form.add_error("archive", str(exc))
        return None
    result = images_create(uploads=uploads, uploaded_by=uploaded_by)
    return UploadBatch(result=result, token=batch_remember(image_ids=result.added))
