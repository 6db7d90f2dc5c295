"""Two "machines" on this one, sharing only what several machines share: one PostgreSQL with
pgvector (the test database), one Redis (a private redis-server: broker and cache), and one media
directory. Each web process and each worker has a data directory of its own, so nothing a request
or a task needs may live on one machine's disk.

Upload through the first web process; a worker is killed with SIGKILL in the middle of the
batch and the other one finishes it, with nothing lost or embedded twice; the second web process
finds the images by words and by image (and pages an image query the first one answered);
deleting through the second makes the image vanish from the first at once.
"""

from __future__ import annotations

import ast
import os
import re
import signal
from pathlib import Path

import pytest
import requests

from api.tokens import api_token_create
from gallery.models import Image
from search import encoder
from search.models import ImageVector
from search.query import vectors as query_vectors
from tests.support.constants import PREFORK_ONE
from tests.support.images import image_bytes
from tests.support.processes import Gunicorn
from tests.support.waiting import wait_for
from tests.support.workers import pool_process_running_an_embedding, rows_held

pytestmark = [
    pytest.mark.pgvector,
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("pgvector_store"),
]

BATCH = 40  # three embedding tasks of IMAGESEARCH_EMBED_BATCH_SIZE (16)
_SUCCEEDED = re.compile(r"Task search\.tasks\.embed_images\[[0-9a-f-]+\] succeeded in [0-9.e-]+s: (\{.*\})")


def _exact_ranking(picture: bytes, ids: list[int]) -> list[int]:
    """The images in order of exact similarity to ``picture``, from their stored hybrids (the
    tiny random model tells small pictures apart poorly: the point is that the second machine
    answers what the database holds)."""
    vector = query_vectors.query_vector_for_image(data=picture)
    rows = Image.objects.filter(pk__in=ids).values_list("pk", "hybrid_vector")
    scores = {pk: float(encoder.from_bytes(blob) @ vector) for pk, blob in rows}
    return sorted(scores, key=lambda pk: (-scores[pk], pk))


def _embedded(log: Path) -> int:
    return sum(ast.literal_eval(m.group(1))["embedded"] for m in _SUCCEEDED.finditer(log.read_text()))


@pytest.fixture
def machines(tmp_path, private_redis, start_worker, clip_model_dir):
    """The shared media directory and, per machine, the environment of its processes."""
    from tests.conftest import _database_url

    media = tmp_path / "shared-media"
    media.mkdir()

    def machine_env(name: str) -> dict[str, str]:
        data = tmp_path / name
        data.mkdir()
        return {
            "DATABASE_URL": _database_url(),
            "IMAGESEARCH_VECTOR_BACKEND": "pgvector",
            "IMAGESEARCH_DATA_DIR": str(data),
            "IMAGESEARCH_MEDIA_DIR": str(media),
            "IMAGESEARCH_CACHE_URL": private_redis.url.replace("/0", "/1"),
            "CELERY_BROKER_URL": private_redis.url,
            "IMAGESEARCH_CLIP_MODEL": str(clip_model_dir),
            "IMAGESEARCH_TORCH_THREADS": "1",
            "DJANGO_DEBUG": "0",
        }

    started: list[Gunicorn] = []

    def web(name: str) -> Gunicorn:
        log = tmp_path / f"{name}.log"
        server = Gunicorn(workers=1, threads=4, log_path=log, env={**os.environ, **machine_env(name)})
        started.append(server.start())
        return server

    def worker(name: str):
        # The sweep of the worker that lives on hands over what the killed one held soon.
        soon = {"imagesearch.settings:SWEEP_INTERVAL": 2.0, "search.ingest.sweep:PENDING_TIMEOUT": 5}
        return start_worker(
            *PREFORK_ONE, "--beat", broker=private_redis.url, env_overrides=machine_env(name), constants=soon
        )

    yield {"media": media, "web": web, "worker": worker}
    for server in started:
        server.stop()


def test_two_web_and_two_worker_machines_share_one_database_media_and_redis(
    machines, staff_user, private_redis
):
    web1, web2 = machines["web"]("web-1"), machines["web"]("web-2")
    web1.wait_answering("/")
    web2.wait_answering("/")
    token = api_token_create(user=staff_user, name="two machines")[1]
    staff = {"Authorization": f"Bearer {token}"}
    url1, url2 = f"http://127.0.0.1:{web1.port}", f"http://127.0.0.1:{web2.port}"

    # Upload through the first web machine (no worker runs yet: the tasks wait in Redis).
    pictures = {f"k{i}.png": image_bytes(700 + i, size=(48, 36)) for i in range(BATCH)}
    files = [("files", (name, data, "image/png")) for name, data in pictures.items()]
    kestrels = list(pictures)[: BATCH // 2]
    response = requests.post(
        f"{url1}/api/images",
        headers=staff,
        files=files[: BATCH // 2],
        data={"labels": "kestrel"},
        timeout=120,
    )
    assert response.status_code == 201, response.text
    response2 = requests.post(
        f"{url1}/api/images",
        headers=staff,
        files=files[BATCH // 2 :],
        data={"labels": "harbour"},
        timeout=120,
    )
    assert response2.status_code == 201, response2.text
    ids = response.json()["added"] + response2.json()["added"]
    assert len(ids) == BATCH
    assert all((machines["media"] / name).is_file() for name in Image.objects.values_list("file", flat=True))

    # Two worker machines take the batch; the first is killed (SIGKILL, the whole group) while
    # it embeds: the rows are held, so it cannot have finished anything.
    with rows_held(ids):
        first = machines["worker"]("worker-1")
        wait_for(
            lambda: pool_process_running_an_embedding(first.proc.pid),
            timeout=120,
            what="the first worker embedding",
        )
        second = machines["worker"]("worker-2")
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.stop()

    def all_ready() -> bool:
        if Image.objects.filter(pk__in=ids, status=Image.Status.FAILED).exists():
            raise AssertionError("an image failed")
        return Image.objects.filter(pk__in=ids, status=Image.Status.READY).count() == BATCH

    second.wait_while_running(all_ready, timeout=240, interval=0.5, what="every image ready")
    # A task logs its count after its last row is ready: wait for the logs to account for them.
    second.wait_while_running(
        lambda: _embedded(second.log_path) >= BATCH, timeout=60, what="the embedding tasks' reports"
    )
    assert _embedded(first.log_path) == 0
    assert _embedded(second.log_path) == BATCH  # none lost, none through the model twice
    assert ImageVector.objects.filter(image_id__in=ids).count() == BATCH

    # The second web machine finds them by words ...
    found = requests.get(f"{url2}/api/search", params={"text": "kestrel", "k": BATCH // 2}, timeout=60).json()
    by_name = dict(Image.objects.filter(pk__in=ids).values_list("pk", "original_name"))
    assert {by_name[r["id"]] for r in found["results"]} == set(kestrels)
    thumbnail = requests.get(found["results"][0]["thumbnail_url"], timeout=60)
    assert (thumbnail.status_code, thumbnail.headers["Content-Type"]) == (200, "image/jpeg")

    # ... and by image; the first machine pages on with the token the second handed out.
    target = ids[BATCH - 3]
    query = {"image": ("q.png", pictures[by_name[target]], "image/png")}
    by_image = requests.post(f"{url2}/api/search", files=query, data={"k": 5}, timeout=60).json()
    assert [r["id"] for r in by_image["results"]] == _exact_ranking(pictures[by_name[target]], ids)[:5]
    page2 = requests.get(
        f"{url1}/api/search", params={"image_token": by_image["image_token"], "k": 5, "offset": 5}, timeout=60
    )
    assert page2.status_code == 200, page2.text
    assert not {r["id"] for r in page2.json()["results"]} & {r["id"] for r in by_image["results"]}

    # Delete through the second machine: gone from the first at once, and from the shared media.
    stored = machines["media"] / Image.objects.get(pk=target).file.name
    assert requests.delete(f"{url2}/api/images/{target}", headers=staff, timeout=60).status_code == 204
    again = requests.post(f"{url1}/api/search", files=query, data={"k": 5}, timeout=60).json()
    assert target not in [r["id"] for r in again["results"]]
    assert requests.get(f"{url1}/api/images/{target}", timeout=60).status_code == 404
    assert not ImageVector.objects.filter(image_id=target).exists()
    assert not stored.exists()
