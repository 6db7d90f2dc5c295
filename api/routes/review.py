"""Staff: near-duplicate groups, label suggestions and likely mislabels."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Status
from ninja.errors import HttpError

from search.duplicates import scan as duplicates
from search.labelling import review
from search.query import queries

from .. import review_schemas as rs
from .. import schemas as s
from ..app import MislabelId, SuggestionId, api, errors, image_out, require_perm
from ..auth import STAFF


@api.get(
    "/api/duplicates",
    auth=STAFF,
    response={200: rs.DuplicatesOut, **errors(400, 401, 403)},
    tags=["images"],
)
def duplicates_list(request: HttpRequest, params: Query[rs.DuplicatesParams]):
    """Groups of near-duplicate images (cosine of their image vectors at or above
    `IMAGESEARCH_DUPLICATE_THRESHOLD`), as the worker's last scan found them, and the scan's
    progress; the same groups as the admin's *Near-duplicates* page."""
    require_perm(request, "gallery.view_image")
    rows = list(duplicates.groups_listed()[params.offset : params.offset + params.limit + 1])
    groups = [
        {
            "id": group.pk,
            "scan": group.scan,
            "top_similarity": group.top_similarity,
            "least_similarity": group.least_similarity,
            "images": [
                {
                    **image_out(request, member.image),
                    "file_bytes": duplicates.file_bytes(member.image),
                    "similarity": member.similarity,
                }
                for member in group.members.all()
            ],
        }
        for group in rows[: params.limit]
    ]
    return {
        "scan": duplicates.scan_summary(),
        "groups": groups,
        "offset": params.offset,
        "has_more": len(rows) > params.limit,
    }


@api.get(
    "/api/suggestions",
    auth=STAFF,
    response={200: rs.SuggestionsOut, **errors(400, 401, 403)},
    tags=["labelling"],
)
def suggestions_list(request: HttpRequest, params: Query[rs.SuggestionsParams]):
    """Images with suggested labels, as the worker's last labelling pass found them (images with
    no label first, then by their best suggestion's confidence); the admin's *Label suggestions*."""
    require_perm(request, "gallery.view_image")
    window = params.offset + params.limit + 1
    images = list(review.review_images(min_confidence=params.min_confidence)[params.offset : window])
    shown = images[: params.limit]
    found = review.suggestions_for(shown, min_confidence=params.min_confidence)
    return {
        "labelling": review.pass_summary(),
        "images": [
            {
                "image": image_out(request, image),
                "suggestions": [
                    {"id": x.pk, "label": x.label.name, "confidence": x.confidence}
                    for x in found.get(image.pk, [])
                ],
            }
            for image in shown
        ],
        "offset": params.offset,
        "has_more": len(images) > params.limit,
    }


@api.post(
    "/api/suggestions/{suggestion_id}/accept",
    auth=STAFF,
    response={200: s.ImageDetailOut, **errors(400, 401, 403, 404)},
    tags=["labelling"],
)
def suggestion_accept(request: HttpRequest, suggestion_id: SuggestionId):
    """Add the suggested label to its image, through the relabel service (its hybrid is recomputed
    from stored vectors in the background). 404 when it is no longer open."""
    require_perm(request, "gallery.change_image")
    image = _reviewed(lambda: review.suggestion_accept(suggestion_id=suggestion_id))
    return image_out(request, queries.image_for(image.pk, include_unindexed=True))


@api.post(
    "/api/suggestions/{suggestion_id}/reject",
    auth=STAFF,
    response={204: None, **errors(400, 401, 403, 404)},
    tags=["labelling"],
)
def suggestion_reject(request: HttpRequest, suggestion_id: SuggestionId):
    """Reject a suggestion: no later pass proposes that label for that image again."""
    require_perm(request, "gallery.change_image")
    _reviewed(lambda: review.suggestion_reject(suggestion_id=suggestion_id))
    return Status(204, None)


@api.post(
    "/api/suggestions/accept",
    auth=STAFF,
    response={200: rs.AcceptedOut, **errors(400, 401, 403)},
    tags=["labelling"],
)
def suggestions_accept_above(request: HttpRequest, body: rs.AcceptAboveIn):
    """Accept every open suggestion at or above `min_confidence` (one relabel per image)."""
    require_perm(request, "gallery.change_image")
    done = review.suggestions_accept_above(min_confidence=body.min_confidence)
    return {"images": done.images, "labels": done.labels}


@api.get(
    "/api/mislabels",
    auth=STAFF,
    response={200: rs.MislabelsOut, **errors(400, 401, 403)},
    tags=["labelling"],
)
def mislabels_list(request: HttpRequest, params: Query[rs.DuplicatesParams]):
    """Labelled images far from their label's other images (by that label's own spread), each
    with the label that fits better, as the last labelling pass found them."""
    require_perm(request, "gallery.view_image")
    rows = list(review.mislabels_listed()[params.offset : params.offset + params.limit + 1])
    return {
        "labelling": review.pass_summary(),
        "mislabels": [
            {
                "id": m.pk,
                "image": image_out(request, m.image),
                "label": m.label.name,
                "better": m.better.name,
                "spreads": m.spreads,
                "better_confidence": m.better_confidence,
            }
            for m in rows[: params.limit]
        ],
        "offset": params.offset,
        "has_more": len(rows) > params.limit,
    }


@api.post(
    "/api/mislabels/{mislabel_id}/keep",
    auth=STAFF,
    response={204: None, **errors(400, 401, 403, 404)},
    tags=["labelling"],
)
def mislabel_keep(request: HttpRequest, mislabel_id: MislabelId):
    """Keep the image's label as it is: no later pass lists that image with that label again."""
    require_perm(request, "gallery.change_image")
    _reviewed(lambda: review.mislabel_keep(mislabel_id=mislabel_id))
    return Status(204, None)


def _reviewed(apply):
    try:
        return apply()
    except review.ReviewError as exc:
        raise HttpError(404, str(exc)) from None
