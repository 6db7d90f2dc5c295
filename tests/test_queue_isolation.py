"""A test leaves nothing in the run's queue for the next one: every send to the broker waits
for the commit (search.dispatch), so a plain database test, whose transaction is rolled back,
sends nothing; and the guard in tests/conftest.py (``_empty_queue``) fails any such test that
leaves a message, proven on a deliberately leaking test run by a pytest of its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from gallery import services as gallery_services
from gallery.models import Image, Label
from search import dispatch
from search.ingest import pipeline
from tests.factories import create_images
from tests.support.broker import queue_purge
from tests.support.constants import ROOT


def _waiting() -> int:
    return queue_purge(settings.CELERY_BROKER_URL, settings.CELERY_TASK_DEFAULT_QUEUE)


@pytest.mark.django_db
def test_everything_that_hands_work_over_sends_nothing_until_the_commit(staff_client):
    ids = create_images([(1, ["zebra"]), (2, ["sunset", "zebra"]), (3, ["bicycle"])])  # embedding
    pipeline.images_embed(image_ids=ids)  # a rebuild request
    gallery_services.image_relabel(image=Image.objects.get(pk=ids[0]), names=["horse"])  # a refresh
    gallery_services.label_rename(label=Label.objects.get(name="sunset"), name="dusk")
    gallery_services.label_delete(label=Label.objects.get(name="bicycle"))
    gallery_services.images_delete(images=Image.objects.filter(pk=ids[2]))
    for action in ("embed_missing", "retry_failed", "reembed_all", "rebuild"):
        assert staff_client.post("/admin/search/indexstate/status/", {"action": action}).status_code == 302
    dispatch.index_sweep_enqueue()

    assert _waiting() == 0


LEAKING = """
import pytest
from search import dispatch

pytestmark = pytest.mark.django_db


def test_a_send_that_does_not_wait_for_the_commit():
    dispatch._send(dispatch.REBUILD_TASK, countdown=3600)


def test_a_send_that_waits_for_the_commit():
    dispatch.index_rebuild_request()
"""


# The project's fixtures, the guard among them, for a test file outside the tree.
CONFTEST = """
import tests.conftest

globals().update({name: value for name, value in vars(tests.conftest).items() if name[:2] != "__"})
"""


def test_a_plain_database_test_that_leaves_a_message_fails(tmp_path, clip_model_dir):
    (tmp_path / "test_leaking.py").write_text(LEAKING)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    data_dir = tmp_path / "data"
    (data_dir / "models").mkdir(parents=True)
    # The tiny model of this run is reused, not built again.
    (data_dir / "models" / clip_model_dir.name).symlink_to(clip_model_dir)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "IMAGESEARCH_TEST_DATA_DIR": str(data_dir),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }
    env.pop("CI", None)
    # A database of its own (SQLite in its data dir): on PostgreSQL its test database would
    # have this run's name, and its set-up and teardown would drop this run's database.
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT)]
        + ["-p", "no:cacheprovider", "-q", str(tmp_path / "test_leaking.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    summary = result.stdout.strip().splitlines()[-1]
    assert "2 passed" in summary and "1 error" in summary, result.stdout[-3000:] + result.stderr[-2000:]
    assert "ERROR at teardown of test_a_send_that_does_not_wait_for_the_commit" in result.stdout
    assert "left 1 message(s) in the run's queue although it commits nothing" in result.stdout
