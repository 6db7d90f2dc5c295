"""Near-duplicates (search.duplicates.scan): re-encoded, resized and slightly cropped copies are grouped
with their originals and unrelated images are not; staff keep one image of a group and the others
are deleted through the gallery's delete service, exactly those; labels can be merged first;
stale and already-deleted choices are refused with a reason and change nothing. The admin page
and the scan's coalesced requests.

The library and the threshold the tests use: tests.support.near_duplicates.
"""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from gallery.models import Image
from search import dispatch, jobs, tasks
from search.duplicates import scan as duplicates
from search.ingest import pipeline, sweep
from search.models import DuplicateGroup, DuplicateScan, IndexState
from tests.support.images import make_image
from tests.support.near_duplicates import SEEDS, SIZE, TEST_THRESHOLD, near_duplicate_library, store

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("vector_store")]


@pytest.fixture
def library(settings) -> dict[str, dict[str, int]]:
    """Two originals with three copies each, two originals alone: embedded, indexed, scanned."""
    settings.IMAGESEARCH_DUPLICATE_THRESHOLD = TEST_THRESHOLD
    return near_duplicate_library()


def _groups() -> list[set[int]]:
    return [{m.image_id for m in group.members.all()} for group in duplicates.groups_listed()]


def test_copies_are_grouped_with_their_originals_and_unrelated_images_are_not(library):
    assert sorted(_groups(), key=min) == sorted(
        [set(library["kestrel"].values()), set(library["harbour"].values())], key=min
    )
    state = DuplicateScan.get()
    assert (state.number, state.images, state.threshold) == (1, 10, TEST_THRESHOLD)
    assert (state.done, state.total) == (10, 10)  # the last batch's progress
    for group in DuplicateGroup.objects.all():
        assert TEST_THRESHOLD <= group.least_similarity <= group.top_similarity <= 1.0001


def test_a_scan_compares_image_vectors_not_hybrids(library, settings):
    """Labels must not make two pictures alike: relabelling every image alike changes no group."""
    from gallery.services import image_relabel

    for image in Image.objects.all():
        image_relabel(image=image, names=["same label"])
    pipeline.hybrids_refresh(image_ids=list(Image.objects.values_list("pk", flat=True)))
    assert duplicates.duplicates_scan(force=True).scanned
    assert len(_groups()) == 2


def test_a_scan_of_an_unchanged_library_does_nothing_and_a_deletion_is_seen(library):
    before = DuplicateScan.get().number
    report = duplicates.duplicates_scan()
    assert not report.scanned and report.reason == "nothing changed since the last scan"
    assert DuplicateScan.get().number == before

    from gallery.services import images_delete

    images_delete(images=[Image.objects.get(pk=library["kestrel"]["kestrel-q60.jpg"])])
    # The deleted image leaves its group at once (its member row goes with it) ...
    assert library["kestrel"]["kestrel-q60.jpg"] not in set().union(*_groups())
    # ... and the next scan sees the library as it is.
    assert duplicates.duplicates_scan().scanned
    assert DuplicateScan.get().number == before + 1
    assert len(_groups()) == 2


def test_a_new_threshold_setting_is_a_change_and_the_next_scan_uses_it(library, settings):
    settings.IMAGESEARCH_DUPLICATE_THRESHOLD = 0.5  # below every pair of these tiny-model vectors
    assert duplicates.duplicates_scan().scanned
    assert DuplicateScan.get().threshold == 0.5
    assert [len(group) for group in _groups()] == [10]


def _jpeg(image, *, quality: int) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _group_of(ids: dict[str, int]) -> DuplicateGroup:
    return DuplicateGroup.objects.get(members__image_id=next(iter(ids.values())))


def test_keeping_one_deletes_exactly_the_others_rows_and_files(
    library, sent, django_capture_on_commit_callbacks
):
    group = _group_of(library["kestrel"])
    keep = library["kestrel"]["kestrel-half.png"]
    doomed = [pk for pk in library["kestrel"].values() if pk != keep]
    files = [name for i in Image.objects.filter(pk__in=doomed) for name in (i.file.name, i.thumbnail.name)]
    others = set(Image.objects.exclude(pk__in=library["kestrel"].values()).values_list("pk", flat=True))
    requested = IndexState.get().requested

    with django_capture_on_commit_callbacks(execute=True):
        done = duplicates.group_resolve(
            group_id=group.pk, keep=keep, shown=library["kestrel"].values(), merge_labels=False
        )

    assert done.kept == keep and done.deleted == sorted(doomed) and done.already_deleted == []
    assert set(Image.objects.values_list("pk", flat=True)) == others | {keep}
    assert not any(default_storage.exists(name) for name in files)
    assert default_storage.exists(Image.objects.get(pk=keep).file.name)
    assert Image.objects.get(pk=keep).label_names == ["kestrel"]
    assert IndexState.get().requested > requested  # the index catches up (the delete service asked)
    assert not DuplicateGroup.objects.filter(pk=group.pk).exists()
    assert _groups() == [set(library["harbour"].values())]


def test_merging_gives_the_kept_image_every_label_of_the_group(
    library, sent, django_capture_on_commit_callbacks
):
    from gallery.services import image_relabel

    ids = library["harbour"]
    image_relabel(image=Image.objects.get(pk=ids["harbour-q60.jpg"]), names=["harbour", "boats"])
    image_relabel(image=Image.objects.get(pk=ids["harbour-cropped.jpg"]), names=["quay at dusk"])
    keep = ids["harbour.png"]
    with django_capture_on_commit_callbacks(execute=True):
        done = duplicates.group_resolve(
            group_id=_group_of(ids).pk, keep=keep, shown=ids.values(), merge_labels=True
        )
    assert sorted(done.labels) == ["boats", "harbour", "quay at dusk"]
    assert sorted(Image.objects.get(pk=keep).label_names) == ["boats", "harbour", "quay at dusk"]
    assert not Image.objects.filter(pk__in=[pk for pk in ids.values() if pk != keep]).exists()


def test_a_group_a_newer_scan_found_again_unchanged_can_still_be_resolved(library):
    shown = _group_of(library["kestrel"])
    duplicates.duplicates_scan(force=True)  # the same groups, under new ids
    assert not DuplicateGroup.objects.filter(pk=shown.pk).exists()
    keep = library["kestrel"]["kestrel.png"]
    done = duplicates.group_resolve(
        group_id=shown.pk, keep=keep, shown=library["kestrel"].values(), merge_labels=False
    )
    assert done.deleted == sorted(pk for pk in library["kestrel"].values() if pk != keep)


def test_a_group_whose_images_changed_since_the_page_is_refused_and_nothing_changes(library):
    shown = _group_of(library["kestrel"])
    another = {"kestrel-q40.jpg": _jpeg(make_image(SEEDS["kestrel"], SIZE), quality=40)}
    new_copy = store(another, "kestrel")["kestrel-q40.jpg"]
    pipeline.images_embed(image_ids=[new_copy])
    assert duplicates.duplicates_scan().scanned
    assert new_copy in {m.image_id for m in _group_of(library["kestrel"]).members.all()}
    count = Image.objects.count()
    with pytest.raises(duplicates.DuplicateChoiceError, match="out of date"):
        duplicates.group_resolve(
            group_id=shown.pk,
            keep=library["kestrel"]["kestrel.png"],
            shown=library["kestrel"].values(),  # the page did not show the new copy
            merge_labels=False,
        )
    assert Image.objects.count() == count


def test_keeping_an_image_deleted_meanwhile_is_refused_and_nothing_changes(library):
    from gallery.services import images_delete

    ids = library["kestrel"]
    group = _group_of(ids)
    keep = ids["kestrel.png"]
    images_delete(images=[Image.objects.get(pk=keep)])
    with pytest.raises(
        duplicates.DuplicateChoiceError, match=f"Image {keep}, the one chosen to keep, has been deleted"
    ):
        duplicates.group_resolve(group_id=group.pk, keep=keep, shown=ids.values(), merge_labels=False)
    assert Image.objects.filter(pk__in=ids.values()).count() == 3


def test_images_deleted_by_someone_else_meanwhile_are_reported(library):
    from gallery.services import images_delete

    ids = library["kestrel"]
    gone = ids["kestrel-cropped.jpg"]
    images_delete(images=[Image.objects.get(pk=gone)])
    done = duplicates.group_resolve(
        group_id=_group_of(ids).pk, keep=ids["kestrel.png"], shown=ids.values(), merge_labels=False
    )
    assert done.already_deleted == [gone]
    assert f"Already deleted before: {gone}." in done.message()
    assert not Image.objects.filter(pk__in=ids.values()).exclude(pk=ids["kestrel.png"]).exists()


def test_an_image_of_another_group_is_refused(library):
    ids, other = library["kestrel"], library["harbour"]["harbour.png"]
    with pytest.raises(duplicates.DuplicateChoiceError, match=f"Image {other} is not in this group"):
        duplicates.group_resolve(
            group_id=_group_of(ids).pk, keep=other, shown=ids.values(), merge_labels=False
        )
    with pytest.raises(duplicates.DuplicateChoiceError, match=f"Image\\(s\\) {other} are not in this group"):
        duplicates.group_resolve(
            group_id=_group_of(ids).pk,
            keep=ids["kestrel.png"],
            shown=[*ids.values(), other],
            merge_labels=False,
        )
    assert Image.objects.count() == 10


# --- Requests: after a rebuild, coalesced, never inside a request ------------------------------


def test_the_task_name_is_the_one_the_worker_registers():
    assert dispatch.DUPLICATES_TASK == tasks.scan_duplicates.name


def _scans_sent(sent: list[tuple[str, dict]]) -> int:
    return [name for name, _ in sent].count(dispatch.DUPLICATES_TASK)


def test_a_rebuild_that_served_requests_asks_for_one_scan_however_many_requests(
    sent, django_capture_on_commit_callbacks
):
    """On either store: FAISS writes a generation, pgvector counts the requests served."""
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):
            dispatch.index_rebuild_request()  # as the pipeline asks after embedding
            tasks.rebuild_index()
        dispatch.duplicates_scan_request()
    state = DuplicateScan.get()
    assert state.requested == 3 and state.queued
    assert _scans_sent(sent) == 1
    duplicates.duplicates_scan()  # takes the queued one: new requests queue again
    assert DuplicateScan.get().done_request == 3
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.duplicates_scan_request()
    assert _scans_sent(sent) == 2


def test_a_scan_lost_with_its_message_is_sent_again(sent, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    with django_capture_on_commit_callbacks(execute=True):
        dispatch.duplicates_scan_request()
        dispatch.duplicates_scan_request()
    assert _scans_sent(sent) == 1
    long_ago = timezone.now() - jobs.LOST_MESSAGE_AFTER - timedelta(seconds=5)
    DuplicateScan.objects.update(due_at=long_ago)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.duplicates_scan_request()
    assert _scans_sent(sent) == 2


def test_the_sweep_sends_a_scan_requested_while_the_broker_was_down(sent, django_capture_on_commit_callbacks):
    DuplicateScan.get()
    DuplicateScan.objects.update(requested=1)  # counted, never sent
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep.index_sweep()["duplicates_scan_scheduled"] == 1
    assert _scans_sent(sent) == 1
    assert sweep.index_sweep()["duplicates_scan_scheduled"] == 0  # queued now


# --- The admin page ---------------------------------------------------------------------------


PAGE = "/admin/search/duplicatescan/groups/"


def test_the_page_shows_each_group_with_thumbnails_sizes_labels_and_upload_times(staff_client, library):
    response = staff_client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="module duplicate-group"') == 2
    for ids in (library["kestrel"], library["harbour"]):
        for pk in ids.values():
            image = Image.objects.get(pk=pk)
            assert image.thumbnail.url in html
            assert f"{image.width}×{image.height}" in html
            assert f'value="{pk}"' in html
            assert image.uploaded_at.strftime("%Y-%m-%d %H:%M") in html
    assert "kestrel" in html and "harbour" in html
    assert "orchard" not in html and "tram" not in html
    assert "2 groups among 10 images" in html
    assert reverse("admin:search_duplicates") == PAGE
    progress = staff_client.get(reverse("admin:search_duplicates_json")).json()
    assert progress["groups"] == 2 and progress["running"] is False and progress["number"] == 1


def test_keeping_one_on_the_page_deletes_the_others(
    staff_client, library, sent, django_capture_on_commit_callbacks
):
    ids = library["harbour"]
    keep = ids["harbour-cropped.jpg"]
    form = {"group": _group_of(ids).pk, "keep": keep, "shown": list(ids.values()), "action": "delete_others"}
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(PAGE, form, follow=True)
    assert f"Kept image {keep}; deleted 3 near-duplicate(s)." in response.content.decode()
    assert not Image.objects.filter(pk__in=[pk for pk in ids.values() if pk != keep]).exists()
    assert Image.objects.filter(pk=keep).exists()


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            {"group": "x", "keep": "1", "action": "delete_others"},
            "That group could not be read; reload the page.",
        ),
        ({"group": "1", "action": "delete_others"}, "Choose the image to keep."),
        ({"group": "999999", "keep": "1", "action": "delete_others"}, "This group is out of date"),
        ({"action": "explode"}, "Unknown action."),
    ],
)
def test_bad_choices_on_the_page_say_why_and_change_nothing(staff_client, library, form, message):
    response = staff_client.post(PAGE, form, follow=True)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Image.objects.count() == 10


def test_scan_now_asks_the_worker(staff_client, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(PAGE, {"action": "scan"}, follow=True)
    assert "A near-duplicate scan was requested." in response.content.decode()
    assert _scans_sent(sent) == 1
    assert DuplicateScan.get().number == 0  # the page itself scanned nothing


def test_the_page_is_for_staff_who_may_see_images(client, django_user_model):
    assert client.get(PAGE).status_code == 302  # to the login page
    clerk = django_user_model.objects.create_user(username="clerk", password="pw-clerk-123", is_staff=True)
    client.force_login(clerk)
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, {"action": "scan"}).status_code == 403
