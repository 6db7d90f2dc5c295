"""Search forms: validate what the browser sent, nothing more."""

from __future__ import annotations

from django import forms
from django.conf import settings


class TextSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=1_000_000, strip=True)
    page = forms.IntegerField(required=False, min_value=1, max_value=10_000)
    like = forms.IntegerField(required=False, min_value=1)
    qimg = forms.RegexField(required=False, regex=r"^[0-9a-f]{32}$")


class ImageSearchForm(forms.Form):
    image = forms.FileField(
        error_messages={"required": "Choose an image to search with.", "empty": "The image file is empty."}
    )

    def clean_image(self):
        image = self.cleaned_data["image"]
        limit = settings.IMAGESEARCH_MAX_UPLOAD_BYTES
        if image.size > limit:
            raise forms.ValidationError(
                f"The image is {image.size / 1e6:.1f} MB; the limit is {limit / 1e6:.1f} MB."
            )
        return image
