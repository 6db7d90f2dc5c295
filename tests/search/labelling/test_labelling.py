"""Suggested labels and likely mislabels (search.labelling) on a synthetic library with the tiny
model, on both stores: an unlabelled copy of a labelled picture gets that label suggested first,
and accepting it (through the relabel service) makes it findable by the label's words; a
rejection is remembered; accept-all takes only what reaches the confidence; a deliberately
mislabelled image is listed with the label that fits it better, and the label's own spread (not a
flat cut-off) decides what is far. The pass runs in this process, as the worker runs it."""

from __future__ import annotations

import io

import numpy as np
import pytest

from gallery.models import Image
from gallery.services import images_create, label_delete
from search.ingest import pipeline, rebuild
from search.labelling import review, scoring
from search.labelling.passes import labelling_pass
from search.models import LabellingPass, LabelSuggestion, Mislabel
from search.query import ranking
from search.query import vectors as query_vectors
from search.stores import faiss as search_index
from tests.factories import upload
from tests.support.images import make_image
from tests.support.near_duplicates import SEEDS

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_store")]

SIZE = (192, 144)
VARIANTS = 6


def variants(name: str, count: int = VARIANTS, *, first: int = 0) -> list[bytes]:
    """Pictures of one subject as a library holds them: one original re-encoded and cropped in
    as many ways (the tiny random model sees them as alike, and other subjects as apart)."""
    original = make_image(SEEDS[name], SIZE)
    w, h = SIZE
    found = []
    for n in range(first, first + count):
        picture = original.crop((n, n % 3, w - n, h - (n % 4)))
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=60 + 5 * n)
        found.append(out.getvalue())
    return found


def _store(pictures: list[bytes], labels: list[str], *, name: str) -> list[int]:
    """Stored through the upload service; with no labels, as an upload that welcomes none."""
    uploads = [upload(data, labels, f"{name}-{n}.jpg") for n, data in enumerate(pictures)]
    for item in uploads:
        item.unlabelled = not labels
    result = images_create(uploads=uploads)
    assert not result.refused and not result.duplicates, (result.refused, result.duplicates)
    return result.added


def _index(ids: list[int]) -> None:
    pipeline.images_embed(image_ids=ids)
    _rebuild()


def _rebuild() -> None:
    rebuild.index_rebuild()
    search_index.reset_readers()  # the next search reads the new generation, not the cached one


def _found_by_words(words: str, k: int) -> list[int]:
    vector = query_vectors.query_vector_for_text(text=words)
    return [hit.image.pk for hit in ranking.images_search(vector=vector, page_size=k).hits]


@pytest.fixture
def library() -> dict[str, list[int]]:
    stored = {name: _store(variants(name), [name], name=name) for name in ("kestrel", "harbour", "orchard")}
    _index([pk for ids in stored.values() for pk in ids])
    return stored


def test_an_unlabelled_copy_gets_its_pictures_label_first_and_accepting_makes_it_findable(library):
    [copy] = _store(variants("kestrel", 1, first=VARIANTS), [], name="copy")
    _index([copy])
    assert Image.objects.get(pk=copy).label_names == []
    assert copy not in _found_by_words("kestrel", VARIANTS + 1)

    report = labelling_pass()
    assert report.ran and report.images == 3 * VARIANTS + 1 and report.labels == 3
    suggestions = list(LabelSuggestion.objects.filter(image_id=copy).order_by("-confidence"))
    assert suggestions[0].label.name == "kestrel"
    assert suggestions[0].confidence > 0.5
    assert all(s.confidence < suggestions[0].confidence for s in suggestions[1:])
    # Unlabelled images come first in the review list.
    assert list(review.review_images())[0].pk == copy

    review.suggestion_accept(suggestion_id=suggestions[0].pk)
    image = Image.objects.get(pk=copy)
    assert image.label_names == ["kestrel"]
    assert not LabelSuggestion.objects.filter(pk=suggestions[0].pk).exists()
    # The relabel service's refresh recomputes the hybrid from stored vectors (no image model).
    pipeline.hybrids_refresh(image_ids=[copy])
    _rebuild()
    assert copy in _found_by_words("kestrel", VARIANTS + 1)


def test_a_rejected_suggestion_is_never_proposed_again_for_that_image(library):
    [copy] = _store(variants("harbour", 1, first=VARIANTS), [], name="copy")
    _index([copy])
    labelling_pass()
    first = LabelSuggestion.objects.filter(image_id=copy).order_by("-confidence").first()
    review.suggestion_reject(suggestion_id=first.pk)
    labelling_pass()
    labelling_pass()
    rows = LabelSuggestion.objects.filter(image_id=copy, label_id=first.label_id)
    assert [(r.rejected, r.confidence) for r in rows] == [(True, first.confidence)]
    assert first.label_id not in [s.label_id for s in review.suggestions_open().filter(image_id=copy)]
    with pytest.raises(review.ReviewError, match="no longer open"):
        review.suggestion_accept(suggestion_id=first.pk)


def test_accept_all_takes_only_the_suggestions_at_or_above_the_confidence(library):
    copies = [
        _store(variants(name, 1, first=VARIANTS), [], name=f"copy-{name}")[0]
        for name in ("kestrel", "orchard")
    ]
    _index(copies)
    labelling_pass()
    open_rows = list(review.suggestions_open())
    cut = max(s.confidence for s in open_rows)  # the best only
    qualifying = {(s.image_id, s.label.name) for s in open_rows if s.confidence >= cut}
    done = review.suggestions_accept_above(min_confidence=cut)
    assert done.labels == len(qualifying)
    for image_id, name in qualifying:
        assert name in Image.objects.get(pk=image_id).label_names
    assert not review.suggestions_open().filter(confidence__gte=cut).exists()
    assert review.suggestions_open().filter(confidence__lt=cut).exists()
    with pytest.raises(review.ReviewError, match="from 0 to 1"):
        review.suggestions_accept_above(min_confidence=1.5)


def test_a_deliberately_mislabelled_image_is_listed_with_the_label_that_fits(library):
    [wrong] = _store(variants("harbour", 1, first=VARIANTS), ["kestrel"], name="wrong")
    _index([wrong])
    report = labelling_pass()
    listed = list(review.mislabels_listed())
    assert [(m.image_id, m.label.name, m.better.name) for m in listed] == [(wrong, "kestrel", "harbour")]
    assert report.mislabels == 1 and listed[0].spreads > scoring.MISLABEL_SPREADS
    review.mislabel_relabel(mislabel_id=listed[0].pk)
    assert Image.objects.get(pk=wrong).label_names == ["harbour"]
    pipeline.hybrids_refresh(image_ids=[wrong])
    labelling_pass()
    assert not Mislabel.objects.exists()


def _around(rng, centre: np.ndarray, noise: float, n: int) -> np.ndarray:
    v = centre + noise * rng.normal(size=(n, len(centre)))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_far_is_measured_by_each_labels_own_spread():
    # Label 0: images all alike; label 1: images that vary widely. An image in label 0 as far from
    # its fellows as label 1's images are from theirs is far for label 0; label 1's are not.
    rng = np.random.default_rng(3)
    base = rng.normal(size=(2, 32))
    tight, loose = _around(rng, base[0], 0.05, 8), _around(rng, base[1], 1.2, 8)
    odd = _around(rng, base[0], 1.2, 1)
    vectors = np.concatenate([tight, loose, odd]).astype(np.float32)
    members = np.array([(i, 0) for i in range(8)] + [(8 + i, 1) for i in range(8)] + [(16, 0)])
    spreads = scoring.closeness_spreads(vectors, members, 2)
    assert spreads[-1] > scoring.MISLABEL_SPREADS  # the odd one in the tight label
    assert (spreads[8:16] < scoring.MISLABEL_SPREADS).all()  # the loose label's own


def test_a_rarer_kind_of_picture_within_a_label_is_not_far():
    # One label, two kinds of picture (ten of one, three of the other): the three have their
    # like among the label's images, so none of them is far; a lone odd one is.
    rng = np.random.default_rng(4)
    base = rng.normal(size=(3, 32))
    vectors = np.concatenate(
        [_around(rng, base[0], 0.1, 10), _around(rng, base[1], 0.1, 3), _around(rng, base[2], 0.1, 1)]
    ).astype(np.float32)
    members = np.array([(i, 0) for i in range(14)])
    spreads = scoring.closeness_spreads(vectors, members, 1)
    assert (spreads[:13] < scoring.MISLABEL_SPREADS).all()
    assert spreads[13] > scoring.MISLABEL_SPREADS


def test_too_few_labelled_images_suggest_nothing_and_say_why():
    _index(_store(variants("tram", 2), ["tram"], name="tram"))
    report = labelling_pass()
    assert report.suggestions == 0 and "Too few labelled images" in report.reason
    assert LabellingPass.get().note == report.reason


def test_an_image_whose_label_was_deleted_is_unlabelled_and_reviewed_first(library):
    [copy] = _store(variants("orchard", 1, first=VARIANTS), ["windmill"], name="mill")
    _index([copy])
    from gallery.models import Label

    label_delete(label=Label.objects.named("windmill").get())
    pipeline.hybrids_refresh(image_ids=[copy])
    labelling_pass()
    first = list(review.review_images())[0]
    assert (first.pk, first.n_labels) == (copy, 0)
    assert review.suggestions_for([first])[copy][0].label.name == "orchard"
