"""Admin: the index status page and its actions (embed missing, retry, re-embed, rebuild), and
the image list's "re-embed" action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import path, reverse

from gallery import admin as gallery_admin
from gallery.models import Image

from . import dispatch, pipeline, status, vectorstore
from .models import IndexState


@admin.register(IndexState)
class IndexStatusAdmin(admin.ModelAdmin):
    """Shows up in the admin index as "Index status"; its list page is the status page."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_urls(self):
        return [
            path("status/", self.admin_site.admin_view(self.status_view), name="search_status"),
            path("status.json", self.admin_site.admin_view(self.status_json_view), name="search_status_json"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:search_status"))

    def status_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("gallery.change_image"):
            raise PermissionDenied
        if request.method == "POST":
            self._run_action(request, request.POST.get("action", ""))
            return HttpResponseRedirect(reverse("admin:search_status"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Index status",
            "status": status.index_status(),
        }
        return render(request, "admin/search/status.html", context)

    def status_json_view(self, request: HttpRequest) -> JsonResponse:
        """The status page's figures, polled by the page so that it updates by itself."""
        if not request.user.has_perm("gallery.view_image"):
            raise PermissionDenied
        return JsonResponse(status.status_summary())

    def _run_action(self, request: HttpRequest, action: str) -> None:
        with transaction.atomic():
            if action == "embed_missing":
                done = pipeline.images_embed_missing()
                message = (
                    f"{done['reembed']} image(s) queued for embedding, "
                    f"{done['reweigh']} hybrid(s) to recompute."
                )
            elif action == "retry_failed":
                message = f"{pipeline.images_retry_failed()} failed image(s) queued again."
            elif action == "reembed_all":
                ids = list(Image.objects.values_list("pk", flat=True))
                message = f"{pipeline.images_reembed(image_ids=ids)} image(s) queued for embedding."
            elif action == "rebuild" and vectorstore.enabled():
                message = vectorstore.NOTHING_TO_REBUILD
            elif action == "rebuild":
                dispatch.index_rebuild_request()
                message = "An index rebuild was requested."
            else:
                self.message_user(request, "Unknown action.", messages.ERROR)
                return
        self.message_user(request, message, messages.SUCCESS)


# Re-embedding is search's work, so search adds its action to gallery's image list: gallery
# reaches search only through search.dispatch (see docs/architecture.md).
admin.site.unregister(Image)


@admin.register(Image)
class ImageAdmin(gallery_admin.ImageAdmin):
    actions = ["reembed_selected", *gallery_admin.ImageAdmin.actions]

    @admin.action(description="Re-embed selected images", permissions=["change"])
    def reembed_selected(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        count = pipeline.images_reembed(image_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} image(s) queued for embedding.", messages.SUCCESS)
