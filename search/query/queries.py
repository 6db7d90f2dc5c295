"""A search as people and programs ask for it: words, an image, both, "more like this", or
only labels. Turned here into a query vector and a page of :mod:`search.query.ranking` results.

The search page and the JSON API both go through :func:`run`, so they answer the same
question the same way; :mod:`search.query.vectors` turns a query into its vector.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from functools import cached_property, lru_cache
from typing import ClassVar
from urllib.parse import quote_plus

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from gallery.models import Image
from gallery.validation import InvalidImage, check_query_image_size

from .. import encoder
from ..calibration.cutoffs import MAX_LEVEL, MIN_LEVEL, Cutoff, cutoff
from ..errors import QueryError, QueryTargetMissing
from . import ranking
from . import vectors as query_vectors
from .explain import QueryPart, QueryVector
from .label_counts import popular_labels
from .vectors import MAX_QUERY_TEXT_LENGTH, words_split

DEFAULT_IMAGE_WEIGHT = 0.5  # words and image count the same, as in the stored hybrids
MAX_FILTER_LABELS = 10
GOOD_MATCHES_LEVEL = 0.8  # the search page's "Good matches only": precision 0.8 or better


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    image: bytes | None = field(default=None, repr=False)  # a query image just uploaded
    image_token: str = ""  # ``qimg``: the remembered vector of an earlier query image
    like: int | None = None  # "more like this": an indexed image's id
    labels: tuple[str, ...] = ()
    sort: str = "relevance"
    image_weight: float = DEFAULT_IMAGE_WEIGHT
    exclude: tuple[str, ...] = ()  # terms left out, besides the text's own ``-word`` terms
    alpha: float | None = None  # emphasis: 1 "looks like", 0 "labelled as"; None: the hybrids'
    min_precision: float | None = None  # "good matches only": the calibrated cut-off's level

    max_text_length: ClassVar[int] = MAX_QUERY_TEXT_LENGTH  # for the search box's maxlength

    @property
    def has_image(self) -> bool:
        return self.image is not None or bool(self.image_token)

    # ``words``, ``excluded`` and ``kind`` are read a dozen times a request (the view, the
    # search, the page): worked out once per query (the instance is frozen; ``replace`` makes a
    # new one, with none of them worked out yet).
    @cached_property
    def words(self) -> str:
        """The words to look for (the text without its ``-word`` terms)."""
        return words_split(self.text)[0]

    @cached_property
    def excluded(self) -> tuple[str, ...]:
        """Every term left out: the text's ``-word`` terms and ``exclude``."""
        return tuple(dict.fromkeys((*words_split(self.text)[1], *self.exclude)))

    @property
    def default_alpha(self) -> float:
        """Where the emphasis slider starts: the stored hybrids' own image weight."""
        return float(settings.IMAGESEARCH_IMAGE_WEIGHT)

    @property
    def alpha_percent(self) -> int:
        return round(100 * (self.alpha if self.alpha is not None else self.default_alpha))

    @property
    def labels_percent(self) -> int:
        return 100 - self.alpha_percent

    @property
    def emphasis_text(self) -> str:
        """The emphasis in words: "looks like", "labelled as" or the mix."""
        if self.alpha_percent == 100:
            return "looks like"
        if self.alpha_percent == 0:
            return "labelled as"
        return f"{self.alpha_percent} % picture"

    @cached_property
    def kind(self) -> str:
        """``like``, ``hybrid`` (words and image), ``image``, ``text``, ``browse`` (labels only)
        or ``empty``."""
        if self.like:
            return "like"
        words = bool(query_vectors.query_text_clean(self.words))
        if self.has_image:
            return "hybrid" if words else "image"
        if words:
            return "text"
        # Only labels, or only words left out: the newest images with those labels and without
        # images labelled with the words left out (nothing to move a query away from).
        return "browse" if self.labels or self.excluded else "empty"

    def params(self, **changes: object) -> list[tuple[str, str]]:
        """GET parameters that ask this query again (an uploaded image by its token), with the
        fields of ``changes`` changed."""
        # The fields as changed, without building a changed query (a page asks for some 17
        # links, each a changed query): only the fields read below.
        query = _Changed(self, changes) if changes else self
        params: list[tuple[str, str]] = []
        if query.like:
            params.append(("like", str(query.like)))
        if query.text.strip():
            params.append(("q", query.text))
        if query.image_token:
            params.append(("qimg", query.image_token))
            if query.text.strip():
                params.append(("w", f"{query.image_weight:g}"))
        params.extend(("label", name) for name in query.labels)
        params.extend(("exclude", term) for term in query.exclude)
        if query.sort != "relevance":
            params.append(("sort", query.sort))
        if query.alpha is not None:
            params.append(("alpha", f"{query.alpha:g}"))
        if query.min_precision == GOOD_MATCHES_LEVEL:
            params.append(("good", "1"))
        elif query.min_precision is not None:
            params.append(("min_precision", f"{query.min_precision:g}"))
        return params

    def url(self, *, page: int = 1, **changes: object) -> str:
        """``?`` and the GET parameters of :meth:`params` (and ``page`` past the first), as
        ``urlencode`` writes them."""
        params = self.params(**changes)
        if page > 1:
            params.append(("page", str(page)))
        return "?" + "&".join(f"{_quoted(name)}={_quoted(value)}" for name, value in params)


#: ``urlencode``'s own quoting of one name or value, remembered: a page's links repeat the same
#: few values (the text, the labels) over and over.
_quoted = lru_cache(maxsize=4096)(quote_plus)


class _Changed:
    """The fields of ``query`` that :meth:`SearchQuery.params` reads, ``changes`` applied."""

    __slots__ = ("_changes", "_query")

    def __init__(self, query: SearchQuery, changes: dict[str, object]) -> None:
        unknown = set(changes) - _FIELD_NAMES
        if unknown:  # as ``dataclasses.replace`` refuses them
            raise TypeError(f"SearchQuery has no field {', '.join(sorted(unknown))}")
        self._query, self._changes = query, changes

    def __getattr__(self, name: str) -> object:
        changes = self._changes
        return changes[name] if name in changes else getattr(self._query, name)


_FIELD_NAMES = frozenset(f.name for f in fields(SearchQuery))


def search_query_build(
    *,
    text: str | None = None,
    image: UploadedFile | None = None,
    image_token: str | None = None,
    like: int | None = None,
    labels: Iterable[str] | None = None,
    sort: str | None = None,
    image_weight: float | None = None,
    exclude: Iterable[str] | None = None,
    alpha: float | None = None,
    min_precision: float | None = None,
) -> SearchQuery:
    """The query from validated request parameters, the search page's form or the API's: absent
    ones take their defaults, and a newly uploaded image replaces a remembered one."""
    return SearchQuery(
        text=text or "",
        image=read_query_image(image) if image else None,
        image_token="" if image else image_token or "",
        like=like,
        labels=tuple(labels or ()),
        sort=sort or "relevance",
        image_weight=DEFAULT_IMAGE_WEIGHT if image_weight is None else image_weight,
        exclude=tuple(dict.fromkeys(" ".join(t.split()) for t in exclude or () if t.strip())),
        alpha=alpha,
        min_precision=min_precision,
    )


def query_vector(query: SearchQuery) -> tuple[QueryVector, SearchQuery]:
    """The vector to search with (and the parts it is made of), and the query as it can be asked
    again by GET (a new query image replaced by its token). Words and an image together give
    their weighted hybrid; terms left out pull the vector away from them."""
    if query.like:
        like = query_vectors.query_vector_for_image_id(image_id=query.like)
        return query_vectors.leaving_out(QueryVector.single("the chosen image", like), query.excluded), query
    image_vector = None
    if query.image is not None:
        token = query_vectors.image_token(query.image)
        try:  # the same picture again (the search box resends it): no decode, no model slot
            image_vector = query_vectors.recall_image(token)
        except QueryTargetMissing:
            image_vector = query_vectors.query_vector_for_image(data=query.image)
            query_vectors.remember_image(query.image, image_vector)
        query = replace(query, image=None, image_token=token)
    elif query.image_token:
        image_vector = query_vectors.recall_image(query.image_token)
    words = query_vectors.query_text_clean(query.words)
    if image_vector is None:
        if not words:
            raise QueryError("Say what to look for.")
        vector = QueryVector.single("words", query_vectors.query_vector_for_text(text=words))
    elif not words:
        vector = QueryVector.single("image", image_vector)
    else:
        if not 0.0 <= query.image_weight <= 1.0:
            raise QueryError("The image weight is a number from 0 to 1.")
        text_vector = query_vectors.query_vector_for_text(text=words)
        vector = QueryVector.combined(
            [
                QueryPart("image", query.image_weight, query_vectors.unit(image_vector)),
                QueryPart("words", 1.0 - query.image_weight, query_vectors.unit(text_vector)),
            ]
        )
    return query_vectors.leaving_out(vector, query.excluded), query


def run(
    query: SearchQuery, *, page: int = 1, page_size: int | None = None
) -> tuple[ranking.ResultPage, SearchQuery]:
    """One page of results for ``query``, and the query as it can be asked again by GET."""
    if len(query.labels) > MAX_FILTER_LABELS:
        raise QueryError(f"Filter by at most {MAX_FILTER_LABELS} labels at a time.")
    if query.kind in ("browse", "empty"):  # no query: the newest images (with those labels)
        found = ranking.images_browse(
            labels=query.labels, without_labels=query.excluded, page=page, page_size=page_size
        )
        return found, query
    if query.alpha is not None and not 0.0 <= query.alpha <= 1.0:
        raise QueryError("The emphasis is a number from 0 (labelled as) to 1 (looks like).")
    if query.min_precision is not None and not MIN_LEVEL <= query.min_precision <= MAX_LEVEL:
        raise QueryError(f"min_precision is a share of right answers from {MIN_LEVEL} to {MAX_LEVEL}.")
    vector, query = query_vector(query)
    found = _cutoff(query)
    result = ranking.images_search(
        vector=vector,
        page=page,
        page_size=page_size,
        exclude_id=query.like,
        labels=query.labels,
        without_labels=query.excluded,
        sort=query.sort,
        alpha=query.alpha,
        min_score=found.threshold if found is not None else None,
    )
    result.cutoff = found
    if found is not None and found.threshold is None:
        result.notices.append(f"“Good matches only” cannot apply: {found.reason}")
    return result, query


def _cutoff(query: SearchQuery) -> Cutoff | None:
    """The calibrated cut-off a query asks for (``min_precision``): for its kind of query, words
    or an image; words and an image together take the lower of the two."""
    if query.min_precision is None:
        return None
    level = query.min_precision
    if query.kind == "hybrid":
        both = [cutoff("text", level), cutoff("image", level)]
        known = [found for found in both if found.threshold is not None]
        return min(known, key=lambda found: found.threshold) if known else both[0]
    return cutoff("image" if query.kind in ("image", "like") else "text", level)


def run_slice(
    query: SearchQuery, *, offset: int, limit: int
) -> tuple[list[ranking.Hit], bool, ranking.ResultPage, SearchQuery]:
    """Results ``offset`` to ``offset + limit`` (for the API), whether more follow, the page they
    came from and the query as it can be asked again."""
    if offset < 0 or limit < 1:
        raise QueryError("offset is 0 or more and k is 1 or more.")
    limit = min(limit, ranking.MAX_RESULTS - offset)  # results stop there: a short last page
    if limit < 1:
        raise QueryError(f"Results stop at {ranking.MAX_RESULTS}; refine the query to see others.")
    last = offset + limit >= ranking.MAX_RESULTS
    if offset % limit == 0:
        result, query = run(query, page=offset // limit + 1, page_size=limit)
        return result.hits, result.has_next and not last, result, query
    result, query = run(query, page=1, page_size=offset + limit)
    return result.hits[offset:], result.has_next and not last, result, query


@dataclass
class Chip:
    name: str
    active: bool
    url: str


def label_chips(query: SearchQuery, hits: Iterable[ranking.Hit], *, limit: int = 12) -> list[Chip]:
    """Filter chips: the labels in use (click to remove), then the most frequent labels of these
    results, then the library's most used ones (click to narrow the query to them)."""
    chips = [
        Chip(name, True, query.url(labels=tuple(n for n in query.labels if n != name)))
        for name in query.labels
    ]
    seen = {name.lower() for name in query.labels}
    counts = Counter(name for hit in hits for name in hit.image.label_names)
    names = [name for name, _ in counts.most_common()] + [name for name, _ in popular_labels(limit)]
    for name in names:
        if len(chips) >= limit + len(query.labels):
            break
        if name.lower() not in seen:
            seen.add(name.lower())
            chips.append(Chip(name, False, query.url(labels=(*query.labels, name))))
    return chips


def result_links(query: SearchQuery, result: ranking.ResultPage) -> dict[str, str]:
    """Links of a results page that keep the query: previous, next, and the two sort orders."""
    return {
        "prev": query.url(page=result.page - 1) if result.has_previous else "",
        "next": query.url(page=result.page + 1) if result.has_next else "",
        "relevance": query.url(sort="relevance"),
        "date": query.url(sort="date"),
        "emphasis_reset": query.url(alpha=None),
    }


def start_page(*, staff: bool = False) -> dict[str, object]:
    """What the search page shows before a query: the newest images and the labels in use,
    or why there is nothing to search yet. Why a model could not load (its text may name paths
    of this machine) is for ``staff``; others are told that it could not."""

    model_error = encoder.last_load_error()
    if model_error and not staff:
        model_error = query_vectors.MODEL_UNAVAILABLE
    return {
        "recent": ranking.images_browse(page_size=12).hits,
        "labels": popular_labels(),
        "total": Image.objects.count(),
        "pending": Image.objects.pending().count(),
        "model_error": model_error,
    }


def neighbours(image: Image, *, limit: int = 12) -> tuple[list[ranking.Hit], str]:
    """The images nearest to ``image`` (its stored hybrid), or why there are none to show."""
    if image.status != Image.Status.READY:
        return [], "This image is not indexed yet, so it has no neighbours to show."
    try:
        result, _ = run(SearchQuery(like=image.pk), page_size=limit)
    except QueryError as exc:
        return [], str(exc)
    return result.hits, ""


def read_query_image(upload: UploadedFile) -> bytes:
    """The bytes of an uploaded query image, refusing an oversized one before reading it (and
    reading one byte past the limit at most, whatever its headers declared)."""
    try:
        check_query_image_size(upload.size or 0)
        data = upload.read(settings.IMAGESEARCH_MAX_QUERY_IMAGE_BYTES + 1)
        check_query_image_size(len(data))
    except InvalidImage as exc:
        raise QueryError(str(exc)) from None
    if not data:
        raise QueryError("The image file is empty.")
    return data


def image_for(image_id: int, *, include_unindexed: bool = False) -> Image:
    """One image with its labels; only ready ones unless ``include_unindexed`` (staff).
    Raises ``Image.DoesNotExist``."""
    rows = Image.objects.for_display()
    if not include_unindexed:
        rows = rows.ready()
    return rows.get(pk=image_id)
