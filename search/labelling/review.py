"""Staff review of what the labelling pass found: suggestions to accept (one, or all above a
confidence) or reject, and likely mislabels to relabel. Accepting goes through the relabel
service (gallery.services.image_relabel), so the hybrid is recomputed from the stored vectors
in the background without running the image model; a rejection is remembered."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Case, Count, Max, Q, QuerySet, Value, When

from gallery.models import Image
from gallery.services import image_relabel

from ..models import LabellingPass, LabelSuggestion, Mislabel


class ReviewError(ValueError):
    """The choice cannot be applied (gone, already done); the message says why, for a person."""


@dataclass(frozen=True)
class AcceptReport:
    images: int
    labels: int

    def message(self) -> str:
        return (
            f"{self.labels} label(s) added to {self.images} image(s); their search vectors are being updated."
        )


def suggestions_open() -> QuerySet[LabelSuggestion]:
    return LabelSuggestion.objects.filter(rejected=False)


def review_images(*, min_confidence: float = 0.0) -> QuerySet[Image]:
    """Images with open suggestions (at or above ``min_confidence``): those with no label at all
    first, then by their best suggestion's confidence, highest first. Each row carries
    ``n_labels`` and ``best_confidence``."""
    open_q = Q(label_suggestions__rejected=False, label_suggestions__confidence__gte=min_confidence)
    return (
        Image.objects.for_display()
        .annotate(
            n_labels=Count("labels", distinct=True),
            best_confidence=Max("label_suggestions__confidence", filter=open_q),
        )
        .filter(best_confidence__isnull=False)
        .annotate(labelled=Case(When(n_labels=0, then=Value(0)), default=Value(1)))
        .order_by("labelled", "-best_confidence", "pk")
    )


def suggestions_for(images: list[Image], *, min_confidence: float = 0.0) -> dict[int, list[LabelSuggestion]]:
    """The open suggestions of ``images`` (at or above ``min_confidence``), best first."""
    found: dict[int, list[LabelSuggestion]] = defaultdict(list)
    rows = suggestions_open().filter(image__in=images, confidence__gte=min_confidence).select_related("label")
    for suggestion in rows.order_by("-confidence", "pk"):
        found[suggestion.image_id].append(suggestion)
    return found


def suggestion_accept(*, suggestion_id: int) -> Image:
    """Add the suggested label to its image (through the relabel service)."""
    with transaction.atomic():
        suggestion = _open_suggestion(suggestion_id)
        image = suggestion.image
        image_relabel(image=image, names=[*image.label_names, suggestion.label.name])
        suggestion.delete()
    return image


def suggestions_accept_above(*, min_confidence: float, image_ids: list[int] | None = None) -> AcceptReport:
    """Accept every open suggestion at or above ``min_confidence`` (of ``image_ids`` when given):
    one relabel per image, adding all its labels that qualify."""
    if not 0.0 <= min_confidence <= 1.0:
        raise ReviewError("The confidence is a number from 0 to 1.")
    with transaction.atomic():
        rows = suggestions_open().filter(confidence__gte=min_confidence).select_related("label")
        if image_ids is not None:
            rows = rows.filter(image_id__in=image_ids)
        by_image: dict[int, list[LabelSuggestion]] = defaultdict(list)
        for suggestion in rows:
            by_image[suggestion.image_id].append(suggestion)
        images = Image.objects.filter(pk__in=list(by_image)).prefetch_related("labels")
        added = 0
        for image in images:
            names = [s.label.name for s in by_image[image.pk]]
            image_relabel(image=image, names=[*image.label_names, *names])
            added += len(names)
        LabelSuggestion.objects.filter(pk__in=[s.pk for group in by_image.values() for s in group]).delete()
    return AcceptReport(images=len(by_image), labels=added)


def suggestion_reject(*, suggestion_id: int) -> LabelSuggestion:
    """Reject a suggestion: it leaves the list, and no later pass proposes it for that image."""
    with transaction.atomic():
        suggestion = _open_suggestion(suggestion_id)
        suggestion.rejected = True
        suggestion.save(update_fields=["rejected"])
    return suggestion


def mislabels_listed() -> QuerySet[Mislabel]:
    return (
        Mislabel.objects.filter(kept=False)
        .select_related("image", "label", "better")
        .order_by("-spreads", "pk")
    )


def mislabel_keep(*, mislabel_id: int) -> Mislabel:
    """Keep the image's label as it is: the entry leaves the list, and no later pass lists that
    image with that label again."""
    with transaction.atomic():
        updated = Mislabel.objects.filter(pk=mislabel_id, kept=False).update(kept=True)
        if not updated:
            raise ReviewError(
                "That entry is no longer listed (the image or its labels changed); reload the page."
            )
    return Mislabel.objects.get(pk=mislabel_id)


def mislabel_relabel(*, mislabel_id: int) -> Image:
    """Replace the image's doubtful label with the one that fits better (through the relabel
    service); its other labels stay."""
    with transaction.atomic():
        found = (
            Mislabel.objects.select_related("image", "label", "better")
            .filter(pk=mislabel_id, kept=False)
            .first()
        )
        if found is None:
            raise ReviewError(
                "That entry is no longer listed (the image or its labels changed); reload the page."
            )
        image = found.image
        names = [name for name in image.label_names if name != found.label.name]
        if found.better.name not in names:
            names.append(found.better.name)
        image_relabel(image=image, names=names)
        found.delete()
    return image


def pass_summary() -> dict[str, object]:
    """The last pass, for the review page and the API."""
    state = LabellingPass.get()
    return {
        "finished_at": state.finished_at.isoformat() if state.finished_at else None,
        "running": state.running_since is not None,
        "queued": state.queued,
        "images": state.images,
        "labels": state.labels,
        "suggestions": state.suggestions,
        "mislabels": state.mislabels,
        "seconds": state.seconds,
        "note": state.note,
        "error": state.last_error,
    }


def _open_suggestion(suggestion_id: int) -> LabelSuggestion:
    suggestion = suggestions_open().select_related("image", "label").filter(pk=suggestion_id).first()
    if suggestion is None:
        raise ReviewError(
            "That suggestion is no longer open (accepted, rejected or replaced); reload the page."
        )
    return suggestion
