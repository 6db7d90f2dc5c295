"""Admin: the index status page and its actions (embed missing, retry, re-embed, rebuild), the
near-duplicates page (keep one image of a group, delete the others), the label suggestions and
likely mislabels to review, and on the image list and page: "re-embed" and the image's
suggestions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import path, reverse

from gallery import admin as gallery_admin
from gallery.models import Image

from . import dispatch, status
from .duplicates import scan as duplicates
from .ingest import actions
from .labelling import review
from .models import DuplicateScan, IndexState, LabellingPass
from .stores.selection import vector_store


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
                done = actions.images_embed_missing()
                message = (
                    f"{done['reembed']} image(s) queued for embedding, "
                    f"{done['reweigh'] + done['text_model']} hybrid(s) to recompute."
                )
            elif action == "retry_failed":
                message = f"{actions.images_retry_failed()} failed image(s) queued again."
            elif action == "reembed_all":
                ids = list(Image.objects.values_list("pk", flat=True))
                message = f"{actions.images_reembed(image_ids=ids)} image(s) queued for embedding."
            elif action == "rebuild" and not vector_store().rebuilds:
                message = vector_store().nothing_to_rebuild
            elif action == "rebuild":
                dispatch.index_rebuild_request()
                message = "An index rebuild was requested."
            else:
                self.message_user(request, "Unknown action.", messages.ERROR)
                return
        self.message_user(request, message, messages.SUCCESS)


class _PagesAdmin(admin.ModelAdmin):
    """A single-row job's admin entry that is a set of pages, not a list of rows: nothing to add
    or delete, and its list is the page named ``landing``."""

    landing = ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        return HttpResponseRedirect(reverse(self.landing))


@admin.register(DuplicateScan)
class DuplicatesAdmin(_PagesAdmin):
    """Shows up in the admin index as "Near-duplicates"; its list page is the groups page. The
    groups are found by the worker (search.duplicates.scan); this page only reads and resolves them."""

    GROUPS_PER_PAGE = 20
    landing = "admin:search_duplicates"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("groups/", view(self.groups_view), name="search_duplicates"),
            path("groups.json", view(self.progress_view), name="search_duplicates_json"),
            *super().get_urls(),
        ]

    def groups_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("gallery.view_image"):
            raise PermissionDenied
        here = reverse("admin:search_duplicates")
        if request.method == "POST":
            page = request.POST.get("page", "")
            self._choice(request, request.POST)
            return HttpResponseRedirect(f"{here}?page={page}" if page.isdigit() else here)
        groups = Paginator(duplicates.groups_listed(), self.GROUPS_PER_PAGE).get_page(request.GET.get("page"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Near-duplicates",
            "scan": duplicates.scan_summary(),
            "groups": groups,
            "shown": [_group_shown(group) for group in groups],
            "may_delete": request.user.has_perm("gallery.delete_image"),
            "may_merge": request.user.has_perms(["gallery.delete_image", "gallery.change_image"]),
        }
        return render(request, "admin/search/duplicates.html", context)

    def progress_view(self, request: HttpRequest) -> JsonResponse:
        """The scan's progress and result, polled by the page while a scan runs."""
        if not request.user.has_perm("gallery.view_image"):
            raise PermissionDenied
        return JsonResponse(duplicates.scan_summary())

    def _choice(self, request: HttpRequest, data) -> None:
        action = data.get("action", "")
        if action == "scan":
            if not request.user.has_perm("gallery.change_image"):
                raise PermissionDenied
            with transaction.atomic():
                dispatch.duplicates_scan_request()
            self.message_user(
                request,
                "A near-duplicate scan was requested. It finds nothing new unless images, the model or"
                " the threshold changed since the last scan.",
                messages.SUCCESS,
            )
            return
        if action not in ("delete_others", "merge_labels"):
            self.message_user(request, "Unknown action.", messages.ERROR)
            return
        merge = action == "merge_labels"
        if not request.user.has_perm("gallery.delete_image") or (
            merge and not request.user.has_perm("gallery.change_image")
        ):
            raise PermissionDenied
        try:
            group_id, keep, shown = _read_choice(data)
            done = duplicates.group_resolve(group_id=group_id, keep=keep, shown=shown, merge_labels=merge)
        except duplicates.DuplicateChoiceError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, done.message(), messages.SUCCESS)


def _read_choice(data) -> tuple[int, int, list[int]]:
    """(group, image to keep, images shown) from the page's form, or a reason for a person."""
    try:
        group_id = int(data.get("group", ""))
        shown = [int(value) for value in data.getlist("shown")]
    except ValueError:
        raise duplicates.DuplicateChoiceError("That group could not be read; reload the page.") from None
    keep = data.get("keep", "")
    if not keep.isdigit():
        raise duplicates.DuplicateChoiceError("Choose the image to keep.")
    return group_id, int(keep), shown


def _group_shown(group) -> dict:
    """A group as the page shows it: its members, and which one to keep unless staff choose
    another (the most pixels, then the oldest)."""
    members = list(group.members.all())
    keep = max(members, key=lambda m: (m.image.width * m.image.height, -m.image.uploaded_at.timestamp()))
    return {
        "group": group,
        "members": [
            {"member": m, "image": m.image, "bytes": duplicates.file_bytes(m.image)} for m in members
        ],
        "keep": keep.image_id,
    }


# Re-embedding is search's work, so search adds its action to gallery's image list: gallery
# reaches search only through search.dispatch (see docs/architecture.md).
admin.site.unregister(Image)


@admin.register(Image)
class ImageAdmin(gallery_admin.ImageAdmin):
    actions = ["reembed_selected", *gallery_admin.ImageAdmin.actions]
    change_form_template = "admin/search/image_change_form.html"

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        # The image's suggestions, under its form; accepted or rejected on the review page's URL.
        extra = dict(extra_context or {})
        if object_id.isdigit():
            suggestions = review.suggestions_open().filter(image_id=int(object_id)).select_related("label")
            extra["label_suggestions"] = list(suggestions.order_by("-confidence", "pk"))
            extra["may_review"] = request.user.has_perm("gallery.change_image")
        return super().change_view(request, object_id, form_url, extra_context=extra)

    @admin.action(description="Re-embed selected images", permissions=["change"])
    def reembed_selected(self, request: HttpRequest, queryset: QuerySet[Image]) -> None:
        count = actions.images_reembed(image_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} image(s) queued for embedding.", messages.SUCCESS)


@admin.register(LabellingPass)
class LabelSuggestionsAdmin(_PagesAdmin):
    """Shows up in the admin index as "Label suggestions": the review list (images with
    suggestions, unlabelled ones first) and the likely mislabels. The worker finds them
    (search.labelling); these pages only read and apply staff's choices."""

    IMAGES_PER_PAGE = 20
    landing = "admin:search_suggestions"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("review/", view(self.review_view), name="search_suggestions"),
            path("mislabels/", view(self.mislabels_view), name="search_mislabels"),
            *super().get_urls(),
        ]

    def review_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("gallery.view_image"):
            raise PermissionDenied
        if request.method == "POST":
            return self._review_choice(request, request.POST)
        images = Paginator(review.review_images(), self.IMAGES_PER_PAGE).get_page(request.GET.get("page"))
        found = review.suggestions_for(list(images))
        context = {
            **self.admin_site.each_context(request),
            "title": "Label suggestions",
            "summary": review.pass_summary(),
            "images": images,
            "shown": [(image, found.get(image.pk, [])) for image in images],
            "may_change": request.user.has_perm("gallery.change_image"),
            "mislabels": review.mislabels_listed().count(),
        }
        return render(request, "admin/search/suggestions.html", context)

    def mislabels_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("gallery.view_image"):
            raise PermissionDenied
        if request.method == "POST":
            return self._review_choice(request, request.POST, back=reverse("admin:search_mislabels"))
        rows = Paginator(review.mislabels_listed(), self.IMAGES_PER_PAGE).get_page(request.GET.get("page"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Likely mislabels",
            "summary": review.pass_summary(),
            "rows": rows,
            "may_change": request.user.has_perm("gallery.change_image"),
        }
        return render(request, "admin/search/mislabels.html", context)

    def _review_choice(self, request: HttpRequest, data, *, back: str | None = None) -> HttpResponse:
        if not request.user.has_perm("gallery.change_image"):
            raise PermissionDenied
        back = _safe_next(request, data.get("next")) or back or reverse("admin:search_suggestions")
        action = data.get("action", "")
        try:
            if action == "accept":
                image = review.suggestion_accept(suggestion_id=_int(data.get("suggestion")))
                message = f"Label added to image {image.pk}; its search vector is being updated."
            elif action == "reject":
                review.suggestion_reject(suggestion_id=_int(data.get("suggestion")))
                message = "Suggestion rejected: it will not be proposed for this image again."
            elif action == "accept_above":
                message = review.suggestions_accept_above(
                    min_confidence=_confidence(data.get("confidence"))
                ).message()
            elif action == "keep":
                review.mislabel_keep(mislabel_id=_int(data.get("mislabel")))
                message = "Label kept: this image will not be listed with it again."
            elif action == "relabel":
                image = review.mislabel_relabel(mislabel_id=_int(data.get("mislabel")))
                message = f"Image {image.pk} relabelled: {', '.join(image.label_names)}."
            else:
                raise review.ReviewError("Unknown action.")
        except review.ReviewError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, message, messages.SUCCESS)
        return HttpResponseRedirect(back)


def _int(value) -> int:
    if not str(value or "").isdigit():
        raise review.ReviewError("That choice could not be read; reload the page.")
    return int(value)


def _confidence(value) -> float:
    try:
        confidence = float(str(value or "").replace(",", "."))
    except ValueError:
        raise review.ReviewError("Give the confidence as a number from 0 to 1, e.g. 0.9.") from None
    if not 0.0 <= confidence <= 1.0:
        raise review.ReviewError("The confidence is a number from 0 to 1.")
    return confidence


def _safe_next(request: HttpRequest, target) -> str | None:
    from django.utils.http import url_has_allowed_host_and_scheme

    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return str(target)
    return None
