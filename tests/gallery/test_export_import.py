"""``export_images`` and ``import_images`` of an export: a round trip into an empty installation
gives the same files, labels and search results; exported vectors spare the image model; a
damaged or hand-edited export is refused with its reasons and imports nothing; an export never
overwrites anything and never looks complete before it is.

The pipeline runs without a worker: its functions are called directly, as the worker would.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from gallery.exports import MANIFEST_NAME, writing
from gallery.models import Image, Label
from gallery.services import images_create
from search import encoder
from search.ingest import pipeline, rebuild
from search.models import ImageVector
from search.query import ranking
from search.query import vectors as query_vectors
from search.stores import faiss as search_index
from search.stores import selection
from tests.factories import upload
from tests.support.images import image_bytes

pytestmark = pytest.mark.django_db

# (seed, format, labels): labels far apart in the tiny model (see tests/search/test_services.py)
LIBRARY = [
    (1, "PNG", ["sunset"]),
    (2, "JPEG", ["bicycle"]),
    (3, "PNG", ["zebra"]),
    (4, "PNG", ["zebra", "sunset"]),
    (5, "WEBP", ["bicycle"]),
]


def _media_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _library(uploader=None) -> list[int]:
    result = images_create(
        uploads=[
            upload(image_bytes(seed, fmt), labels, f"photo{seed}.{fmt.lower()}")
            for seed, fmt, labels in LIBRARY
        ],
        uploaded_by=uploader,
    )
    assert not result.refused, result.refused
    return result.added


def _index(ids: list[int]) -> pipeline.EmbedReport:
    report = pipeline.images_embed(image_ids=ids)
    assert rebuild.index_rebuild().built
    return report


def _snapshot() -> dict:
    """What the library holds and answers, keyed by content (ids differ after an import)."""
    images = {}
    for image in Image.objects.prefetch_related("labels").select_related("uploaded_by"):
        with default_storage.open(image.file.name, "rb") as fh:
            data = fh.read()
        images[image.sha256] = {
            "bytes": data,
            "labels": sorted(image.label_names),
            "name": image.original_name,
            "uploader": image.uploaded_by.username if image.uploaded_by else None,
            "uploaded_at": image.uploaded_at,
            "status": image.status,
            "size": (image.width, image.height),
        }
    results = {}
    queries = {
        word: query_vectors.query_vector_for_text(text=word) for word in ("sunset", "bicycle", "zebra")
    }
    queries["image"] = query_vectors.query_vector_for_image(data=image_bytes(3, "PNG"))
    for what, vector in queries.items():
        page = ranking.images_search(vector=vector, page_size=10)
        results[what] = [(hit.image.sha256, round(hit.score, 4)) for hit in page.hits]
    return {"images": images, "results": results}


def _empty_installation(tmp_path: Path, settings, name: str = "restored") -> None:
    """A new installation in the same database: no rows, new media and index directories."""
    Image.objects.all().delete()
    Label.objects.all().delete()
    settings.MEDIA_ROOT = str(tmp_path / name / "media")
    settings.INDEX_DIR = tmp_path / name / "index"
    search_index.reset_readers()


def _count_image_model_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = encoder.encode_images

    def counting(images, **kwargs):
        calls.append(len(images))
        return original(images, **kwargs)

    monkeypatch.setattr(encoder, "encode_images", counting)
    return calls


def _exported_with_vectors(tmp_path: Path, edit: Callable[[list[dict]], None]) -> Path:
    """An embedded library exported with its vectors, its manifest's images then edited by hand."""
    pipeline.images_embed(image_ids=_library())
    target = tmp_path / "export"
    _run("export_images", str(target), "--with-vectors")
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    edit(manifest["images"])
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    return target


def _vector_of_dimension(dimension: int) -> dict:
    data = np.ones(dimension, "<f4").tobytes()
    return {"dimension": dimension, "data": base64.b64encode(data).decode()}


def _run(command: str, *args: str) -> str:
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw-alice-123", is_staff=True)


# --- Round trip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("with_vectors", [False, True], ids=["files-only", "with-vectors"])
@pytest.mark.parametrize("suffix", ["", ".zip"], ids=["folder", "zip"])
def test_a_round_trip_into_an_empty_installation_gives_the_same_library(
    tmp_path, settings, monkeypatch, alice, suffix, with_vectors
):
    _index(_library(alice))
    before = _snapshot()
    target = tmp_path / f"export{suffix}"

    out = _run("export_images", str(target), *(["--with-vectors"] if with_vectors else []))
    assert "5 images exported" in out and "0 not exported" in out
    if with_vectors:
        assert "5 with image vectors" in out
    assert not list(tmp_path.glob("*.part"))

    _empty_installation(tmp_path, settings)
    calls = _count_image_model_calls(monkeypatch)
    out = _run("import_images", str(target))
    assert "5 added, 0 skipped as duplicates, 0 refused." in out
    ids = list(Image.objects.values_list("pk", flat=True))
    assert Image.objects.filter(status=Image.Status.PENDING).count() == 5
    report = _index(ids)

    if with_vectors:
        assert "5 image vectors reused" in out
        assert calls == [] and (report.embedded, report.refreshed) == (0, 5)
    else:
        assert sum(calls) == 5 and report.embedded == 5
    after = _snapshot()
    assert after["images"] == before["images"]
    assert after["results"] == before["results"]
    for sha256, image in after["images"].items():
        assert image["status"] == Image.Status.READY
        assert hashlib.sha256(image["bytes"]).hexdigest() == sha256


def _stored_and_searchable(ids: list[int]) -> None:
    """Embedded; with FAISS, indexed too (pgvector stores the vectors with the rows)."""
    pipeline.images_embed(image_ids=ids)
    if not selection.enabled():
        assert rebuild.index_rebuild().built


def _same_results(before: dict, after: dict) -> None:
    """The same images for every query, with the same scores to pgvector's precision (halfvec:
    half-precision floats)."""
    assert after.keys() == before.keys()
    for what in before:
        assert {sha for sha, _ in after[what]} == {sha for sha, _ in before[what]}, what
        scores = dict(before[what])
        for sha, score in after[what]:
            assert score == pytest.approx(scores[sha], abs=3e-3), what


@pytest.mark.pgvector
@pytest.mark.parametrize(("source", "target"), [("faiss", "pgvector"), ("pgvector", "faiss")])
def test_a_round_trip_into_another_vector_store_gives_the_same_library(
    pgvector_store, tmp_path, settings, monkeypatch, alice, source, target
):
    settings.IMAGESEARCH_VECTOR_BACKEND = source
    _stored_and_searchable(_library(alice))
    before = _snapshot()
    _run("export_images", str(tmp_path / "export"), "--with-vectors")

    _empty_installation(tmp_path, settings)
    settings.IMAGESEARCH_VECTOR_BACKEND = target
    calls = _count_image_model_calls(monkeypatch)
    out = _run("import_images", str(tmp_path / "export"))
    assert "5 added, 0 skipped as duplicates, 0 refused." in out and "5 image vectors reused" in out
    _stored_and_searchable(list(Image.objects.values_list("pk", flat=True)))

    assert calls == []  # the image model never ran: the vectors came with the export
    after = _snapshot()
    assert after["images"] == before["images"]
    _same_results(before["results"], after["results"])
    if target == "pgvector":
        assert ImageVector.objects.count() == 5


def test_importing_an_export_twice_skips_every_image_as_a_duplicate(tmp_path, settings):
    _library()
    _run("export_images", str(tmp_path / "export"))
    _empty_installation(tmp_path, settings)
    _run("import_images", str(tmp_path / "export"))
    out = _run("import_images", str(tmp_path / "export"))
    assert "0 added, 5 skipped as duplicates, 0 refused." in out
    assert Image.objects.count() == 5


def test_the_manifest_lists_each_image_with_its_details(tmp_path, alice):
    [first, *_] = _library(alice)
    pipeline.images_embed(image_ids=[first])
    _run("export_images", str(tmp_path / "export.zip"), "--with-vectors")
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        manifest = json.loads(archive.read(MANIFEST_NAME))
        image = Image.objects.get(pk=first)
        [entry] = [e for e in manifest["images"] if e["sha256"] == image.sha256]
        assert archive.read(entry["file"]) == image.file.open("rb").read()
    assert (manifest["format"], manifest["format_version"]) == ("imagesearch-export", 1)
    assert manifest["image_count"] == 5 and manifest["vector_count"] == 1
    assert entry["labels"] == ["sunset"] and entry["uploaded_by"] == "alice"
    assert entry["size"] == image.file.size and entry["name"] == "photo1.png"
    assert entry["uploaded_at"] == image.uploaded_at.isoformat()
    vector = entry["image_vector"]
    assert vector["model"] == encoder.model_name() and vector["dimension"] == 64
    assert vector["encoding"] == "float32-le-base64"
    np.testing.assert_array_equal(
        np.frombuffer(base64.b64decode(vector["data"]), "<f4"), encoder.from_bytes(image.image_vector)
    )
    assert sum("image_vector" in e for e in manifest["images"]) == 1  # the others are not embedded yet


def test_an_uploader_unknown_here_is_left_empty(tmp_path, settings, alice):
    _library(alice)
    _run("export_images", str(tmp_path / "export"))
    _empty_installation(tmp_path, settings)
    alice.delete()
    out = _run("import_images", str(tmp_path / "export"))
    assert "5 added" in out
    assert not Image.objects.filter(uploaded_by__isnull=False).exists()


def test_vectors_of_another_model_or_dimension_are_ignored_and_counted(tmp_path, settings, monkeypatch):
    def edit(images: list[dict]) -> None:
        images[0]["image_vector"]["model"] = "another-model"
        images[1]["image_vector"].update(_vector_of_dimension(32))

    target = _exported_with_vectors(tmp_path, edit)

    _empty_installation(tmp_path, settings)
    # Another row of this model already tells the dimension (64) apart from the exported 32.
    [known] = images_create(uploads=[upload(image_bytes(40), ["zebra"])]).added
    pipeline.images_embed(image_ids=[known])
    calls = _count_image_model_calls(monkeypatch)
    out = _run("import_images", str(target))
    assert "5 added" in out
    assert "3 image vectors reused" in out and "2 ignored" in out
    report = pipeline.images_embed(
        image_ids=list(Image.objects.exclude(pk=known).values_list("pk", flat=True))
    )
    assert (report.embedded, report.refreshed) == (2, 3) and sum(calls) == 2
    model = encoder.model_name()
    assert Image.objects.filter(embedding_model=model, status=Image.Status.READY).count() == 6


def test_a_stored_vector_of_the_wrong_dimension_is_embedded_again(tmp_path, settings, monkeypatch):
    # An empty installation has no row that tells the model's dimension: the pipeline checks.
    target = _exported_with_vectors(
        tmp_path, lambda images: images[0]["image_vector"].update(_vector_of_dimension(32))
    )
    _empty_installation(tmp_path, settings)
    calls = _count_image_model_calls(monkeypatch)
    _run("import_images", str(target))
    report = pipeline.images_embed(image_ids=list(Image.objects.values_list("pk", flat=True)))
    assert (report.embedded, report.refreshed) == (1, 4) and sum(calls) == 1
    for image in Image.objects.all():
        assert len(image.image_vector) == 4 * 64 and image.status == Image.Status.READY


# --- A damaged or hand-edited export ------------------------------------------------------------


def _edit(key: str, value):
    def edit(manifest: dict, target: Path) -> None:
        manifest["images"][0][key] = value

    return edit


def _drop(key: str):
    def edit(manifest: dict, target: Path) -> None:
        del manifest["images"][0][key]

    return edit


def _set_version(manifest: dict, target: Path) -> None:
    manifest["format_version"] = 2


def _remove_file(manifest: dict, target: Path) -> None:
    (target / manifest["images"][1]["file"]).unlink()


def _change_file(manifest: dict, target: Path) -> None:
    path = target / manifest["images"][1]["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _climb_out(manifest: dict, target: Path) -> None:
    outside = target.parent / "outside.png"
    outside.write_bytes(image_bytes(50))
    entry = manifest["images"][0]
    entry.update(file="../outside.png", sha256=hashlib.sha256(outside.read_bytes()).hexdigest())
    entry["size"] = outside.stat().st_size


def _absolute(manifest: dict, target: Path) -> None:
    manifest["images"][0]["file"] = str((target / manifest["images"][0]["file"]).resolve())


def _symlink(manifest: dict, target: Path) -> None:
    path = target / manifest["images"][0]["file"]
    real = target.parent / "real.png"
    shutil.move(path, real)
    path.symlink_to(real)


def _bad_vector(manifest: dict, target: Path) -> None:
    manifest["images"][0]["image_vector"] = {
        "model": "m",
        "dimension": 4,
        "encoding": "float32-le-base64",
        "data": "!!",
    }


DAMAGE = {
    "bad JSON": (None, "is not valid JSON"),
    "unknown format version": (
        _set_version,
        "has format version 2; this version of the application reads version 1",
    ),
    "missing field": (_drop("sha256"), "images[0]: the field 'sha256' is missing."),
    "wrong type (size)": (_edit("size", "123"), "images[0].size: expected a whole number, found a text."),
    "wrong type (labels)": (_edit("labels", "zebra"), "images[0].labels: expected a list, found a text."),
    "no labels": (_edit("labels", []), "images[0].labels: an image needs at least one label."),
    "bad date": (_edit("uploaded_at", "yesterday"), "images[0].uploaded_at: 'yesterday' is not an ISO 8601"),
    "bad checksum text": (
        _edit("sha256", "abc"),
        "images[0].sha256: expected 64 lower-case hexadecimal digits.",
    ),
    "bad vector": (_bad_vector, "images[0].image_vector.data: not valid base64."),
    "file missing": (_remove_file, "is missing from the export."),
    "SHA-256 mismatch": (_change_file, "the file's SHA-256 does not match the manifest."),
    "size mismatch": (_edit("size", 7), "the file's size differs from the manifest's 7 bytes."),
    "path with ..": (_climb_out, "the path climbs out of the export with '..'."),
    "absolute path": (_absolute, "an absolute path; an export names its files relative to itself."),
    "symbolic link": (_symlink, "is a symbolic link in the export."),
}


@pytest.fixture
def export_folder(tmp_path, settings) -> Path:
    """An export of the library, in an empty installation (nothing stored yet)."""
    ids = _library()
    pipeline.images_embed(image_ids=ids[:1])
    target = tmp_path / "export"
    _run("export_images", str(target), "--with-vectors")
    _empty_installation(tmp_path, settings)
    return target


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_export_is_refused_with_its_reason_and_nothing_is_imported(export_folder, damage):
    edit, reason = DAMAGE[damage]
    manifest_path = export_folder / MANIFEST_NAME
    if edit is None:
        manifest_path.write_text(manifest_path.read_text()[:-20])
    else:
        manifest = json.loads(manifest_path.read_text())
        edit(manifest, export_folder)
        manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CommandError) as raised:
        _run("import_images", str(export_folder))
    assert reason in str(raised.value)
    assert "nothing was imported" in str(raised.value)
    assert Image.objects.count() == 0 and Label.objects.count() == 0
    assert _media_files() == []


def test_every_problem_of_a_manifest_is_listed_at_once(export_folder):
    manifest_path = export_folder / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["images"][0]["size"] = "big"
    manifest["images"][2]["file"] = "../../etc/passwd"
    manifest["images"][3] = "not an object"
    manifest["images"][4]["sha256"] = manifest["images"][1]["sha256"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CommandError) as raised:
        _run("import_images", str(export_folder))
    message = str(raised.value)
    assert "(5 problems)" in message
    assert "images[0].size" in message and "images[2].file '../../etc/passwd'" in message
    assert "images[3]: expected an object, found a text." in message
    assert "2 images in the manifest have the same SHA-256" in message
    assert f"{manifest['images'][4]['file']}: the file's SHA-256 does not match the manifest." in message
    assert Image.objects.count() == 0 and _media_files() == []


def _zip_of(folder: Path, zip_path: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return zip_path


def test_a_damaged_zip_export_is_refused_with_its_reason(export_folder, tmp_path):
    manifest = json.loads((export_folder / MANIFEST_NAME).read_text())
    first = manifest["images"][0]["file"]
    # The same name twice in one archive: which of the two is meant cannot be known.
    with pytest.warns(UserWarning, match="Duplicate name"):
        archive = _zip_of(export_folder, tmp_path / "dup.zip", {first: b"other bytes"})
    with pytest.raises(CommandError) as raised:
        _run("import_images", str(archive))
    assert f"{first} appears 2 times in the archive." in str(raised.value)

    (export_folder / MANIFEST_NAME).write_text("{")
    archive = _zip_of(export_folder, tmp_path / "bad.zip")
    with pytest.raises(CommandError, match="is not valid JSON"):
        _run("import_images", str(archive))
    assert Image.objects.count() == 0 and _media_files() == []


def test_files_the_manifest_does_not_name_are_reported_and_left_out(export_folder):
    (export_folder / "images" / "stray.png").write_bytes(image_bytes(60))
    out = _run("import_images", str(export_folder))
    assert "5 added" in out
    assert "1 file in the export is not in its manifest and was left out: images/stray.png" in out
    assert Image.objects.count() == 5


def test_labels_from_dirs_makes_no_sense_for_an_export(export_folder):
    with pytest.raises(CommandError, match="--labels-from-dirs"):
        _run("import_images", str(export_folder), "--labels-from-dirs")
    out = _run("import_images", str(export_folder), "--label", "restored")
    assert "5 added" in out
    assert all("restored" in image.label_names for image in Image.objects.prefetch_related("labels"))


# --- Writing an export --------------------------------------------------------------------------


def test_an_export_never_overwrites_anything(tmp_path):
    _library()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    (tmp_path / "old.zip").write_bytes(b"mine")
    (tmp_path / "a-file").write_text("mine")
    for path, message in [
        (full, "is not empty"),
        (tmp_path / "old.zip", "already exists"),
        (tmp_path / "a-file", "is not a folder"),
        (tmp_path / "missing" / "export", "does not exist"),
    ]:
        with pytest.raises(CommandError, match=message):
            _run("export_images", str(path))
    assert (full / "keep.txt").read_text() == "mine" and (tmp_path / "old.zip").read_bytes() == b"mine"

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.zip").touch()
    assert "5 images exported" in _run("export_images", str(tmp_path / "empty"))
    assert "5 images exported" in _run("export_images", str(tmp_path / "empty.zip"))
    assert zipfile.ZipFile(tmp_path / "empty.zip").testzip() is None


@pytest.mark.parametrize("suffix", ["", ".zip"], ids=["folder", "zip"])
def test_an_interrupted_export_leaves_nothing_that_looks_complete(tmp_path, monkeypatch, suffix):
    _library()
    original = writing._image_export
    done: list[int] = []

    def fail_on_the_third(image, **kwargs):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(image.pk)
        return original(image, **kwargs)

    monkeypatch.setattr(writing, "_image_export", fail_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        _run("export_images", str(tmp_path / f"export{suffix}"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]


def test_an_image_whose_file_is_gone_is_listed_as_not_exported(tmp_path):
    [first, *_] = _library()
    image = Image.objects.get(pk=first)
    default_storage.delete(image.file.name)
    out = _run("export_images", str(tmp_path / "export"))
    assert "4 images exported" in out and "1 not exported" in out
    assert f"not exported: image {first} (photo1.png): its file {image.file.name} cannot be read" in out
