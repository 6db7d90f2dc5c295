"""Staff: upload, relabel and delete images; an upload's progress; the index status."""

from __future__ import annotations

from django.http import Http404, HttpRequest
from ninja import File, Form, Status, UploadedFile
from ninja.errors import HttpError

from gallery import formats
from gallery import services as gallery_services
from gallery.batches import batch_status
from gallery.forms import BulkUploadForm
from gallery.uploads import images_upload as gallery_images_upload
from search.query import queries
from search.status import status_summary

from .. import schemas as s
from .. import status_schemas
from ..app import BatchToken, ImageId, api, errors, image_out, require_perm
from ..auth import STAFF


@api.post(
    "/api/images",
    auth=STAFF,
    response={200: s.UploadOut, 201: s.UploadOut, **errors(400, 401, 403)},
    tags=["images"],
    description=(
        "Upload images (`files`, one or many) and/or a zip `archive`, with `labels` (comma-separated) "
        "for all, or labels from the zip's folder names (`labels_from_dirs`); with `unlabelled`, images "
        "that get no label are stored without one (the library suggests labels for them). Validated "
        f"as on the admin upload page; accepted: {formats.description()}. 201 when some were added, 200 when "
        "all were duplicates, 400 when nothing could be added."
    ),
)
def images_upload(
    request: HttpRequest,
    labels: Form[str] = "",
    labels_from_dirs: Form[bool] = False,
    unlabelled: Form[bool] = False,
    files: File[list[UploadedFile]] = None,
    archive: File[UploadedFile] = None,
):
    """Store the uploads through the admin page's service (the description above is the API's)."""
    require_perm(request, "gallery.add_image")
    form = BulkUploadForm(request.POST, request.FILES)
    batch = gallery_images_upload(form=form, uploaded_by=request.auth)
    if batch is None:
        raise HttpError(400, form.error_text())
    result = batch.result
    if not result.added and not result.duplicates:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in result.refused)
        raise HttpError(400, f"Nothing was added. {reasons}")
    return Status(201 if result.added else 200, {**batch.as_json(), "batch": batch.token})


@api.get(
    "/api/uploads/{batch}",
    auth=STAFF,
    response={200: s.BatchOut, **errors(400, 401, 404)},
    tags=["images"],
)
def upload_status(request: HttpRequest, batch: BatchToken):
    """How many images of one upload are pending, ready and failed (with reasons)."""
    status = batch_status(token=batch)
    if status is None:
        raise Http404("Unknown or expired upload batch.")
    return status


@api.patch(
    "/api/images/{image_id}",
    auth=STAFF,
    response={200: s.ImageDetailOut, **errors(400, 401, 403, 404)},
    tags=["images"],
)
def image_relabel(request: HttpRequest, image_id: ImageId, body: s.RelabelIn):
    """Replace an image's labels. Its hybrid is recomputed in the background from stored vectors."""
    require_perm(request, "gallery.change_image")
    image = queries.image_for(image_id, include_unindexed=True)
    gallery_services.image_relabel(image=image, names=body.labels)
    return image_out(request, queries.image_for(image_id, include_unindexed=True))


@api.delete(
    "/api/images/{image_id}",
    auth=STAFF,
    response={204: None, **errors(400, 401, 403, 404)},
    tags=["images"],
)
def image_delete(request: HttpRequest, image_id: ImageId):
    """Delete an image: it leaves search results at once; its files go after the commit."""
    require_perm(request, "gallery.delete_image")
    gallery_services.images_delete(images=[queries.image_for(image_id, include_unindexed=True)])
    return Status(204, None)


@api.get(
    "/api/status", auth=STAFF, response={200: status_schemas.StatusOut, **errors(400, 401)}, tags=["status"]
)
def status(request: HttpRequest):
    """Images per status, the index generation, its size and age, whether it is behind, and the
    cut-off's calibration on the library's own labels."""
    return status_summary()
