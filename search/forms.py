"""Search forms: validate what the browser sent, nothing more."""

from __future__ import annotations

from django import forms
from django.conf import settings

from gallery.services import MAX_LABEL_LENGTH

from .queries import DEFAULT_IMAGE_WEIGHT, MAX_FILTER_LABELS, SearchQuery
from .services import SORTS


class LabelListField(forms.Field):
    """Repeated ``label=`` parameters: the label filter chips."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[str]:
        names = [" ".join(str(v).split()) for v in (value or [])]
        names = list(dict.fromkeys(n for n in names if n))
        if len(names) > MAX_FILTER_LABELS:
            raise forms.ValidationError(f"Filter by at most {MAX_FILTER_LABELS} labels at a time.")
        if any(len(n) > MAX_LABEL_LENGTH for n in names):
            raise forms.ValidationError(f"Labels are at most {MAX_LABEL_LENGTH} characters.")
        return names


class SearchForm(forms.Form):
    """One search box: words, an image (new upload or remembered ``qimg``), or both with a
    weight; "more like this" (``like``); label filters; sort; page."""

    q = forms.CharField(required=False, max_length=1_000_000, strip=True)
    image = forms.FileField(required=False, error_messages={"empty": "The image file is empty."})
    qimg = forms.RegexField(required=False, regex=r"^[0-9a-f]{32}$")
    w = forms.FloatField(required=False, min_value=0.0, max_value=1.0)
    like = forms.IntegerField(required=False, min_value=1, max_value=2**62)
    label = LabelListField(required=False)
    sort = forms.ChoiceField(required=False, choices=[(s, s) for s in SORTS])
    page = forms.IntegerField(required=False, min_value=1, max_value=10_000)

    def clean_image(self):
        image = self.cleaned_data["image"]
        limit = settings.IMAGESEARCH_MAX_UPLOAD_BYTES
        if image and image.size > limit:
            raise forms.ValidationError(
                f"The image is {image.size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB."
            )
        return image

    def query(self) -> SearchQuery:
        data = self.cleaned_data
        image = data.get("image")
        w = data.get("w")
        return SearchQuery(
            text=data.get("q") or "",
            image=image.read() if image else None,
            image_token="" if image else data.get("qimg") or "",
            like=data.get("like"),
            labels=tuple(data.get("label") or ()),
            sort=data.get("sort") or "relevance",
            image_weight=DEFAULT_IMAGE_WEIGHT if w is None else w,
        )

    def error_text(self) -> str:
        return "That search could not be understood: " + " ".join(
            f"{name}: {' '.join(errors)}" for name, errors in self.errors.items()
        )
