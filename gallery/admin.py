"""Admin: staff upload, relabel and delete images here (search.admin adds "re-embed")."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.html import format_html

from . import services
from .batches import batch_status
from .forms import BulkUploadForm, ImageChangeForm, LabelForm
from .models import Image, Label
from .uploads import images_upload

DELAYED_NOTE = (
    " Embedding is delayed: the background queue is unreachable; the images are stored and"
    " will be processed when it is back."
)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    form = ImageChangeForm
    list_display = ["preview", "label_list", "status", "failure_reason", "uploaded_at", "dimensions"]
    list_display_links = ["preview", "label_list"]
    list_filter = ["status", "uploaded_at", ("labels", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["labels__name", "original_name", "sha256"]
    list_per_page = 50
    readonly_fields = [
        "large_preview",
        "original_name",
        "dimensions",
        "sha256",
        "status",
        "failure_reason",
        "embedding_model",
        "uploaded_by",
        "uploaded_at",
    ]
    fields = [
        "large_preview",
        "label_text",
        "original_name",
        "dimensions",
        "status",
        "failure_reason",
        "embedding_model",
        "sha256",
        "uploaded_by",
        "uploaded_at",
    ]
    actions = ["delete_selected"]

    class Media:
        css = {"all": ["css/admin-extra.css"]}  # the previews' sizes: the policy allows no inline style

    def get_queryset(self, request: HttpRequest) -> QuerySet[Image]:
        return super().get_queryset(request).for_display()

    @admin.display(description="Image")
    def preview(self, obj: Image) -> str:
        if not obj.thumbnail:
            return "-"
        return format_html(
            '<img class="image-preview" src="{}" alt="{}">',
            obj.thumbnail.url,
            ", ".join(obj.label_names),
        )

    @admin.display(description="Image")
    def large_preview(self, obj: Image) -> str:
        if not obj.pk:
            return "-"
        return format_html(
            '<a href="{}"><img class="image-preview-large" src="{}" alt=""></a>',
            obj.display_url,
            obj.thumbnail.url if obj.thumbnail else obj.file.url,
        )

    @admin.display(description="Labels")
    def label_list(self, obj: Image) -> str:
        return ", ".join(obj.label_names)

    @admin.display(description="Size")
    def dimensions(self, obj: Image) -> str:
        return f"{obj.width}×{obj.height}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("gallery.add_image")

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        # One image or many: the same upload page, through the same service.
        return HttpResponseRedirect(reverse("admin:gallery_image_upload"))

    def save_model(self, request: HttpRequest, obj: Image, form, change: bool) -> None:
        services.image_relabel(image=obj, names=form.cleaned_data["label_text"])

    def save_related(self, request, form, formsets, change) -> None:
        pass  # labels were saved by the relabel service

    def delete_model(self, request: HttpRequest, obj: Image) -> None:
        services.images_delete(images=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        services.images_delete(images=list(queryset))

    def get_urls(self):
        return [
            path("upload/", self.admin_site.admin_view(self.upload_view), name="gallery_image_upload"),
            path(
                "upload/status/<str:token>/",
                self.admin_site.admin_view(self.upload_status_view),
                name="gallery_image_upload_status",
            ),
            *super().get_urls(),
        ]

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        """The upload form. Sent by the page's script (``Accept: application/json``) it answers
        JSON, so the page can show upload progress and then follow the batch."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        wants_json = "application/json" in request.headers.get("Accept", "")
        form, batch, status_url = BulkUploadForm(), None, ""
        if request.method == "POST":
            form = BulkUploadForm(request.POST, request.FILES)
            batch = images_upload(form=form, uploaded_by=request.user)
            if batch is not None:
                status_url = reverse("admin:gallery_image_upload_status", args=[batch.token])
                if wants_json:
                    return JsonResponse({**batch.as_json(), "status_url": status_url})
                self._upload_finished(request, batch.result)
                form = BulkUploadForm()
            elif wants_json:
                errors = {field: list(errs) for field, errs in form.errors.items()}
                return JsonResponse({"error": form.error_text(), "errors": errors}, status=400)
        context = {
            **self.admin_site.each_context(request),
            "title": "Upload images",
            "opts": self.model._meta,
            "form": form,
            "result": batch.result if batch else None,
            "status_url": status_url,
        }
        return render(request, "admin/gallery/image/upload.html", context, status=400 if form.errors else 200)

    def _upload_finished(self, request: HttpRequest, result: services.ImportResult) -> None:
        level = messages.SUCCESS if result.added else messages.WARNING
        note = "" if result.queued else DELAYED_NOTE
        self.message_user(request, f"Upload finished: {result.summary()}.{note}", level)

    def upload_status_view(self, request: HttpRequest, token: str) -> JsonResponse:
        """How many of one upload's images are pending, ready and failed (polled by the page)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        status = batch_status(token=token)
        if status is None:
            return JsonResponse({"error": "Unknown or expired upload batch."}, status=404)
        return JsonResponse(status)


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    form = LabelForm
    list_display = ["name", "image_count", "has_vector"]
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Label]:
        return super().get_queryset(request).annotate(n_images=Count("images")).defer("vector")

    @admin.display(description="Images", ordering="n_images")
    def image_count(self, obj: Label) -> int:
        return obj.n_images

    @admin.display(description="Text vector", boolean=True)
    def has_vector(self, obj: Label) -> bool:
        return bool(obj.vector_model)

    def save_model(self, request: HttpRequest, obj: Label, form, change: bool) -> None:
        if change:
            services.label_rename(label=Label.objects.get(pk=obj.pk), name=obj.name)
        else:
            services.labels_get_or_create(names=[obj.name])

    def delete_model(self, request: HttpRequest, obj: Label) -> None:
        services.label_delete(label=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Label]) -> None:
        for label in queryset:
            services.label_delete(label=label)
