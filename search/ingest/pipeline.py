"""The embedding pipeline: image and label vectors, and the hybrids the index is built from.

Run by the worker's tasks and the admin's actions. Everything here is safe to run twice: the
state lives in the rows, and an image already embedded by the current model is not run
through the model again (see docs/architecture.md, 'Invariants').
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from PIL import Image as PILImage
from PIL import ImageOps

from gallery import formats
from gallery.models import Image, Label
from gallery.validation import THUMBNAIL_SIZE, InvalidImage, to_rgb

from .. import dispatch, encoder
from ..stores.selection import vector_store
from . import claims

logger = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    embedded: int = 0
    refreshed: int = 0
    failed: int = 0
    skipped: int = 0


def images_embed(*, image_ids: Sequence[int]) -> EmbedReport:
    """Embed these images (those not already embedded by the current model), store their image
    and hybrid vectors, mark them ready or failed, and request an index rebuild.

    Idempotent: an image whose image vector was made by the current model is not run through
    the model again; only its hybrid is refreshed if the labels or the weight changed. The
    pending rows are claimed first, and the claim renewed batch by batch (see search.ingest.claims): an
    image that another live run holds is skipped, so no image goes through the model twice.
    """
    int8_measure_if_due()
    report = EmbedReport()
    owner = claims.claim_owner()
    now = timezone.now()
    # A run of this task that died (its pool process killed) left its claims: take them over.
    claims.claims_free_lost(Image.objects.filter(pk__in=image_ids), now=now)
    Image.objects.filter(pk__in=image_ids).claim(
        owner=owner, now=now, stale_before=claims.claim_stale_before(now)
    )
    try:
        _embed_held(image_ids, owner=owner, report=report)
    finally:
        Image.objects.filter(pk__in=image_ids).claims_release(owner=owner)
    if report.embedded or report.refreshed:
        dispatch.index_rebuild_request()
    return report


#: The int8 measurement waits for a library of at least this many ready images and label texts,
#: and samples at most the larger figures (a few seconds of the worker's time, once per model).
INT8_MIN_IMAGES, INT8_MAX_IMAGES = 50, 300
INT8_MIN_QUERIES, INT8_MAX_QUERIES = 5, 200


def int8_measure_if_due() -> dict[str, Any] | None:
    """With ``IMAGESEARCH_ENCODER_INT8`` (ONNX runtime): measure, once per model, whether int8
    gives fp32's top 10 on this library (search.encoder.int8), before the worker's next batch;
    the figure and the decision are kept beside the export, and this process reloads the models
    so that the decision serves from its next batch. None when it is not due: int8 not asked
    for, already measured, or a library too small to say (fewer than INT8_MIN_IMAGES ready
    images or INT8_MIN_QUERIES label texts; fp32 serves meanwhile)."""
    from search.encoder import int8

    if encoder.runtime() != "onnx" or not settings.IMAGESEARCH_ENCODER_INT8:
        return None
    image_model, text_model, root = encoder.model_name(), encoder.text_model_name(), encoder.export_root()
    encoder.ensure_models()  # both exported
    if int8.decision(image_model, text_model, root) is not None:
        return None
    ready = Image.objects.ready().filter(embedding_model=image_model).order_by("pk")
    count = ready.count()
    texts = list(Label.objects.order_by("name").values_list("name", flat=True).distinct()[:INT8_MAX_QUERIES])
    if count < INT8_MIN_IMAGES or len(texts) < INT8_MIN_QUERIES:
        return None
    step = max(1, count // INT8_MAX_IMAGES)  # spread over the library, the same sample every time
    chosen = list(ready.values_list("pk", flat=True))[::step][:INT8_MAX_IMAGES]
    sample = Image.objects.filter(pk__in=chosen).order_by("pk")
    pictures = []
    for image in sample:
        try:
            pictures.append(_open_for_embedding(image))
        except (OSError, InvalidImage, ValueError):
            continue  # a missing or unreadable file: the sample is the others
    result = int8.measure(
        image_model, text_model, root, queries=texts, images=pictures, threads=encoder.threads()
    )
    logger.info("int8 measured: %s", result["reason"])
    encoder.reset()  # the next load serves what was decided
    return result


def _embed_held(image_ids: Sequence[int], *, owner: str, report: EmbedReport) -> None:
    model = encoder.model_name()
    weight = settings.IMAGESEARCH_IMAGE_WEIGHT
    images = list(Image.objects.filter(pk__in=image_ids).prefetch_related("labels"))
    report.skipped = len(set(image_ids)) - len(images)  # deleted meanwhile: nothing to do
    # Pending rows held by another live run are its to embed.
    others = [i for i in images if i.status == Image.Status.PENDING and i.claimed_by != owner]
    report.skipped += len(others)
    images = [i for i in images if i not in others]
    if not images:
        return
    try:
        encoder.ensure_models()  # images need the image model, their labels the text model
    except encoder.ModelUnavailable as exc:
        for image in images:
            if image.status != Image.Status.READY:
                _mark_failed(image.pk, str(exc))
                report.failed += 1
        return

    vector_bytes = 4 * encoder.dimension()

    def needs_model(image: Image) -> bool:
        # A stored vector of another model, or of the wrong size (an imported one), is made again.
        vector = image.image_vector
        return image.embedding_model != model or vector is None or len(vector) != vector_bytes

    done = [i for i in images if not needs_model(i)]
    todo = [i for i in images if needs_model(i)]
    batch = settings.IMAGESEARCH_EMBED_BATCH_SIZE
    for start in range(0, len(todo), batch):
        # Renewed before each batch: a claim left unrenewed for the claim timeout counts as lost.
        Image.objects.filter(pk__in=[i.pk for i in todo[start:]], claimed_by=owner).update(
            claimed_at=timezone.now()
        )
        _embed_batch(todo[start : start + batch], model=model, weight=weight, report=report)
    if done:
        label_vectors = label_vectors_ensure(
            labels=(label for i in done for label in i.labels.all()), deriving=[i.pk for i in done]
        )
        now = timezone.now()
        _rows_write(
            [(i.pk, _hybrid_for(i, encoder.from_bytes(i.image_vector), label_vectors), {}) for i in done],
            weight=weight,
            now=now,
            ready=True,
        )
        report.refreshed += len(done)


def _embed_batch(images: Sequence[Image], *, model: str, weight: float, report: EmbedReport) -> None:
    decoded: list[tuple[Image, Any]] = []
    for image in images:
        try:
            decoded.append((image, _open_for_embedding(image)))
        except (OSError, ValueError, InvalidImage) as exc:
            _mark_failed(image.pk, f"The image file could not be read: {exc}")
            report.failed += 1
    if not decoded:
        return
    label_vectors = label_vectors_ensure(
        labels=(label for i, _ in decoded for label in i.labels.all()), deriving=[i.pk for i, _ in decoded]
    )
    vectors = encoder.encode_images(
        [pil for _, pil in decoded], batch_size=settings.IMAGESEARCH_EMBED_BATCH_SIZE
    )
    rows = [
        (
            image.pk,
            _hybrid_for(image, vector, label_vectors),
            {"image_vector": encoder.to_bytes(vector), "embedding_model": model},
        )
        for (image, _), vector in zip(decoded, vectors, strict=True)
    ]
    _rows_write(rows, weight=weight, now=timezone.now(), ready=True)
    report.embedded += len(rows)


def hybrids_refresh(*, image_ids: Sequence[int]) -> int:
    """Recompute hybrids from stored image and label vectors (after a relabel, a label rename
    or a weight change, or after the text model was switched). The image model does not run; only
    label texts without a vector from the text model are encoded."""
    model = encoder.model_name()
    weight = settings.IMAGESEARCH_IMAGE_WEIGHT
    images = list(
        Image.objects.filter(
            pk__in=image_ids, embedding_model=model, image_vector__isnull=False
        ).prefetch_related("labels")
    )
    if not images:
        return 0
    try:
        label_vectors = label_vectors_ensure(
            labels=(label for i in images for label in i.labels.all()), deriving=[i.pk for i in images]
        )
    except encoder.ModelUnavailable as exc:
        # The rows stay stamped as stale: the sweep sends them again; the status page says why.
        logger.warning("hybrids of %d image(s) not refreshed: %s", len(images), exc)
        return 0
    rows = [(i.pk, _hybrid_for(i, encoder.from_bytes(i.image_vector), label_vectors), {}) for i in images]
    _rows_write(rows, weight=weight, now=timezone.now(), ready=False)
    dispatch.index_rebuild_request()
    return len(images)


def label_vectors_ensure(*, labels: Iterable[Label], deriving: Collection[int] = ()) -> dict[int, np.ndarray]:
    """Text vectors for labels, computed once per label by the text model and cached on the row
    with that model's name.

    A label whose vector came from another text model gets a new one; the stored hybrids of the
    other images carrying it (all but ``deriving``, whose hybrids the caller derives now) were
    made from the old vector, so they are stamped stale and sent for a refresh in the same
    transaction (a refresh lost with the broker is found again by the sweep, by the stamp).
    """
    model = encoder.text_model_name()
    labels = list({label.pk: label for label in labels}.values())
    missing = [label for label in labels if not label.has_vector_for(model)]
    if missing:
        vectors = encoder.encode_texts([label.name for label in missing])
        replaced = [label.pk for label in missing if label.vector is not None]
        with transaction.atomic():
            for label, vector in zip(missing, vectors, strict=True):
                Label.objects.filter(pk=label.pk, name=label.name).update(
                    vector=encoder.to_bytes(vector), vector_model=model
                )
                label.vector, label.vector_model = encoder.to_bytes(vector), model
            if replaced:
                _hybrids_stale_send(Image.objects.filter(labels__in=replaced).exclude(pk__in=list(deriving)))
    return {label.pk: encoder.from_bytes(label.vector) for label in labels}


def hybrids_text_model_refresh() -> int:
    """After the text model was switched: send every image whose stored hybrid carries a label
    vector of another text model for a hybrid refresh, which encodes its labels with the text
    model and derives the hybrid from the stored image vector (the image model does not run).

    Coalesced by the rows: an image is stamped stale when it is sent, and one already stamped
    and waiting for its refresh is not sent again (the sweep re-sends a lost one). Returns how
    many were sent. Called by the sweep (so a worker started with a new text model catches up
    by itself) and by the status page's *Embed missing*.
    """
    outdated = Label.objects.vectors_outdated(encoder.text_model_name())
    if not outdated.exists():
        return 0
    with transaction.atomic():
        return _hybrids_stale_send(Image.objects.filter(labels__in=outdated.values("pk")))


def _hybrids_stale_send(images: Any) -> int:
    """Stamp the stored hybrids among ``images`` stale and send them for a refresh; skip those
    stamped already and still waiting for theirs. Inside a transaction (sent at commit). Hybrids
    over an image vector of another image model are left to re-embedding (*Embed missing*)."""
    ids = list(
        images.filter(hybrid_vector__isnull=False, embedding_model=encoder.model_name())
        .filter(
            Q(labels_changed_at__isnull=True)
            | Q(hybrid_updated_at__isnull=True)
            | Q(labels_changed_at__lte=F("hybrid_updated_at"))
        )
        .order_by("pk")
        .values_list("pk", flat=True)
        .distinct()
    )
    now = timezone.now()
    for start in range(0, len(ids), dispatch.HYBRIDS_PER_TASK):
        Image.objects.filter(pk__in=ids[start : start + dispatch.HYBRIDS_PER_TASK]).update(
            labels_changed_at=now
        )
    if ids:
        dispatch.hybrids_refresh_enqueue(image_ids=ids)
    return len(ids)


def _open_for_embedding(image: Image) -> Any:
    """Decode an image for the model, as cheaply as possible.

    For a large original, the thumbnail (long side 512, made when the upload was decoded)
    already holds more pixels than CLIP reads (224 short side), so it is decoded instead;
    otherwise the display copy (a JPEG, for an original not every browser shows) or the original
    is, with JPEG draft mode shrinking it while decoding.
    """
    long_side, short_side = max(image.width, image.height), min(image.width, image.height)
    if image.thumbnail and long_side > THUMBNAIL_SIZE and short_side * THUMBNAIL_SIZE / long_side >= 224:
        with image.thumbnail.open("rb") as fh:
            pil = PILImage.open(fh)
            pil.load()
        return pil.convert("RGB")
    formats.decoders_register()  # should a HEIC original have lost its display copy
    with (image.display or image.file).open("rb") as fh:
        pil = PILImage.open(fh)
        if pil.format == "JPEG":
            pil.draft("RGB", (448, 448))
        pil.load()
        try:
            pil = ImageOps.exif_transpose(pil)
        except Exception:  # noqa: BLE001
            pass
        return to_rgb(pil)


def _hybrid_for(image: Image, image_vector: np.ndarray, label_vectors: dict[int, np.ndarray]) -> np.ndarray:
    parts = [label_vectors[label.pk] for label in image.labels.all()]
    return encoder.combine(image_vector, parts, settings.IMAGESEARCH_IMAGE_WEIGHT)


def _rows_write(
    rows: Sequence[tuple[int, np.ndarray, dict[str, Any]]], *, weight: float, now: Any, ready: bool
) -> None:
    """Store each row's hybrid (with its other fields: the image vector and its model, when
    given) and, with ``ready``, mark the rows ready; the vector store writes the hybrids in the
    same transaction (pgvector: an image is searchable as soon as it is ready; FAISS: the next
    generation reads it).

    One transaction for the batch, not one per image: a commit (and on pgvector a store write)
    per batch. A failure rolls the whole batch back: its rows stay as they were (pending ones are
    sent again by the sweep), nothing is half written. A row deleted meanwhile matches no UPDATE
    and gets no stored vector.
    """
    status = {"status": Image.Status.READY, "failure_reason": "", "status_changed_at": now} if ready else {}
    with transaction.atomic():
        written = [
            (pk, hybrid)
            for pk, hybrid, fields in rows
            if Image.objects.filter(pk=pk).update(
                hybrid_vector=encoder.to_bytes(hybrid),
                hybrid_weight=weight,
                hybrid_updated_at=now,
                **status,
                **fields,
            )
        ]
        if written:
            vector_store().rows_ready(written, model=encoder.model_name(), now=now)


def _mark_failed(image_id: int, reason: str) -> None:
    Image.objects.filter(pk=image_id).update(
        status=Image.Status.FAILED, failure_reason=reason[:2000], status_changed_at=timezone.now()
    )
