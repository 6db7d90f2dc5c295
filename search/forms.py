"""Search forms: validate what the browser sent, nothing more."""

from __future__ import annotations

from django import forms

from gallery.labels import MAX_LABEL_LENGTH, normalize_label_name
from gallery.validation import InvalidImage, check_query_image_size

from .calibration.cutoffs import MAX_LEVEL, MIN_LEVEL
from .query.queries import (
    GOOD_MATCHES_LEVEL,
    MAX_FILTER_LABELS,
    MAX_QUERY_TEXT_LENGTH,
    SearchQuery,
    search_query_build,
)
from .query.ranking import SORTS
from .query.vectors import MAX_EXCLUDED


class LabelListField(forms.Field):
    """Repeated ``label=`` parameters: the label filter chips."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[str]:
        names = [normalize_label_name(v) for v in (value or [])]
        names = list(dict.fromkeys(n for n in names if n))
        if len(names) > MAX_FILTER_LABELS:
            raise forms.ValidationError(f"Filter by at most {MAX_FILTER_LABELS} labels at a time.")
        if any(len(n) > MAX_LABEL_LENGTH for n in names):
            raise forms.ValidationError(f"Labels are at most {MAX_LABEL_LENGTH} characters.")
        return names


class ExcludedField(forms.Field):
    """Repeated ``exclude=`` parameters: words to leave out (besides the text's ``-word`` terms)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[str]:
        terms = list(dict.fromkeys(" ".join(v.split()) for v in (value or []) if v.strip()))
        if len(terms) > MAX_EXCLUDED:
            raise forms.ValidationError(f"Leave out at most {MAX_EXCLUDED} words at a time.")
        if any(len(t) > MAX_LABEL_LENGTH for t in terms):
            raise forms.ValidationError(f"Words left out are at most {MAX_LABEL_LENGTH} characters.")
        return terms


class SearchForm(forms.Form):
    """One search box: words, an image (new upload or remembered ``qimg``), or both with a
    weight; "more like this" (``like``); label filters; sort; page."""

    q = forms.CharField(required=False, max_length=MAX_QUERY_TEXT_LENGTH, strip=True)
    image = forms.FileField(required=False, error_messages={"empty": "The image file is empty."})
    qimg = forms.RegexField(required=False, regex=r"^[0-9a-f]{32}$")
    w = forms.FloatField(required=False, min_value=0.0, max_value=1.0)
    like = forms.IntegerField(required=False, min_value=1, max_value=2**62)
    label = LabelListField(required=False)
    sort = forms.ChoiceField(required=False, choices=[(s, s) for s in SORTS])
    exclude = ExcludedField(required=False)
    alpha = forms.FloatField(required=False, min_value=0.0, max_value=1.0)
    good = forms.BooleanField(required=False)  # "Good matches only"
    min_precision = forms.FloatField(required=False, min_value=MIN_LEVEL, max_value=MAX_LEVEL)
    page = forms.IntegerField(required=False, min_value=1, max_value=10_000)

    def clean_image(self):
        image = self.cleaned_data["image"]
        if image:
            try:
                check_query_image_size(image.size)
            except InvalidImage as exc:
                raise forms.ValidationError(str(exc)) from None
        return image

    def query(self) -> SearchQuery:
        data = self.cleaned_data
        return search_query_build(
            text=data.get("q"),
            image=data.get("image"),
            image_token=data.get("qimg"),
            like=data.get("like"),
            labels=data.get("label"),
            sort=data.get("sort"),
            image_weight=data.get("w"),
            exclude=data.get("exclude"),
            alpha=data.get("alpha"),
            min_precision=data.get("min_precision") or (GOOD_MATCHES_LEVEL if data.get("good") else None),
        )

    def error_text(self) -> str:
        return "That search could not be understood: " + " ".join(
            f"{name}: {' '.join(errors)}" for name, errors in self.errors.items()
        )
