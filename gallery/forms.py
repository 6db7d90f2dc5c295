"""Admin forms for uploading and relabelling images."""

from __future__ import annotations

from django import forms
from django.conf import settings

from . import formats
from .labels import InvalidLabels, split_label_text
from .models import Image, Label


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        # image/* alone would hide HEIC files from pickers that do not know their type.
        accept = "image/*," + formats.file_input_accept()
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": accept}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(d, initial) for d in data if d]
        return [single(data, initial)] if data else []


class BulkUploadForm(forms.Form):
    files = MultipleFileField(required=False, label="Images", help_text="Pick one or many images.")
    archive = forms.FileField(
        required=False,
        label="Zip archive",
        widget=forms.ClearableFileInput(attrs={"accept": ".zip,application/zip"}),
        help_text="Optional: a .zip of images.",
    )
    labels = forms.CharField(
        required=False,
        max_length=2000,
        help_text="Labels for every image, separated by commas.",
    )
    labels_from_dirs = forms.BooleanField(
        required=False,
        label="Label zip entries with their folder name",
    )
    unlabelled = forms.BooleanField(
        required=False,
        label="Images without labels are welcome",
        help_text="Store images that get no label here; the library suggests labels for them to review.",
    )

    def clean_files(self):
        files = self.cleaned_data["files"]
        limit = settings.IMAGESEARCH_MAX_UPLOAD_FILES
        if len(files) > limit:
            raise forms.ValidationError(f"At most {limit} files per upload; you sent {len(files)}.")
        return files

    def clean_labels(self):
        try:
            return split_label_text(self.cleaned_data["labels"])
        except InvalidLabels as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("files") and not cleaned.get("archive"):
            raise forms.ValidationError("Choose at least one image or a zip archive.")
        if (
            "labels" in cleaned
            and not cleaned["labels"]
            and not cleaned.get("unlabelled")
            and not (cleaned.get("archive") and cleaned.get("labels_from_dirs"))
        ):
            raise forms.ValidationError(
                "Give at least one label, take labels from a zip's folder names, or tick"
                ' "Images without labels are welcome".'
            )
        return cleaned

    def error_text(self) -> str:
        """Every error in one line, for answers that are not this form's page (JSON, API)."""
        return " ".join(e for errs in self.errors.values() for e in errs)


class ImageChangeForm(forms.ModelForm):
    """Edit an image's labels (the file itself never changes: upload a new image instead)."""

    label_text = forms.CharField(label="Labels", max_length=2000, help_text="Separated by commas.")

    class Meta:
        model = Image
        fields: list[str] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["label_text"].initial = ", ".join(self.instance.label_names)

    def clean_label_text(self):
        try:
            names = split_label_text(self.cleaned_data["label_text"])
        except InvalidLabels as exc:
            raise forms.ValidationError(str(exc)) from None
        if not names:
            raise forms.ValidationError("An image needs at least one label.")
        return names


class LabelForm(forms.ModelForm):
    class Meta:
        model = Label
        fields = ["name"]
