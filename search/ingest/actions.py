"""What staff ask of the pipeline from the *Index status* page and the image list: re-embed
these images, bring every row up to date with the current models, retry the failed ones. Each
only marks rows and sends work through dispatch; the worker does the embedding."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gallery.models import Image

from .. import dispatch, encoder
from .pipeline import hybrids_text_model_refresh


def images_reembed(*, image_ids: Sequence[int]) -> int:
    """Forget the image vectors of these images and embed them again."""
    ids = list(image_ids)
    with transaction.atomic():
        count = Image.objects.filter(pk__in=ids).update(
            image_vector=None,
            embedding_model="",
            status=Image.Status.PENDING,
            failure_reason="",
            status_changed_at=timezone.now(),
            queued_at=None,
        )
        dispatch.embedding_enqueue(image_ids=ids)
    return count


def images_embed_missing() -> dict[str, int]:
    """Bring every row up to date with the current model and weight.

    Re-embeds only images without a vector from the current model (pending, failed, or made by
    another model: a model change never mixes two models' vectors in one index); recomputes
    hybrids made with another weight, or from label vectors of another text model; rebuilds.
    """
    model = encoder.model_name()
    weight = settings.IMAGESEARCH_IMAGE_WEIGHT
    stale_ids = list(Image.objects.stale(model).values_list("pk", flat=True))
    if stale_ids:
        Image.objects.filter(pk__in=stale_ids).update(
            status=Image.Status.PENDING, failure_reason="", status_changed_at=timezone.now()
        )
        dispatch.embedding_enqueue(image_ids=stale_ids)
    reweigh_ids = list(
        Image.objects.filter(embedding_model=model, image_vector__isnull=False)
        .exclude(hybrid_weight=weight)
        .values_list("pk", flat=True)
    )
    if reweigh_ids:
        dispatch.hybrids_refresh_enqueue(image_ids=reweigh_ids)
    relabel = hybrids_text_model_refresh()
    dispatch.index_rebuild_request()
    return {"reembed": len(stale_ids), "reweigh": len(reweigh_ids), "text_model": relabel}


def images_retry_failed() -> int:
    ids = list(Image.objects.failed().values_list("pk", flat=True))
    return images_reembed(image_ids=ids) if ids else 0
