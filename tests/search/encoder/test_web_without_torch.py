"""A web process that serves the ONNX runtime never imports torch, transformers or
sentence-transformers: neither while it answers a text query nor an image query (the image
graph and the preprocessing), nor in gunicorn's master, which loads the model before forking."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import web_server_env
from tests.factories import create_indexed_images
from tests.support.processes import Gunicorn

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "transformers", "sentence_transformers")

# One web process (Django's own request handling, the project's settings), serving a text query
# and an image query, then saying what it imported.
_WEB_PROCESS = f"""
import json, sys
import django
django.setup()
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from tests.support.images import image_bytes

client = Client(HTTP_HOST="localhost")
text = client.get("/", {{"q": "zebra"}})
image = client.post("/", {{"image": SimpleUploadedFile("q.png", image_bytes(2, "PNG"), "image/png")}})
from search import encoder
print(json.dumps({{
    "text": [text.status_code, text.content.decode().count('href="/image/')],
    "image": [image.status_code, image.content.decode().count('href="/image/')],
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}),
    "libtorch": "libtorch" in open("/proc/self/maps").read(),
    "encoder": encoder.describe(),
}}))
"""


@pytest.mark.worker  # media and index where the web process looks: the data directory
@pytest.mark.django_db(transaction=True)
def test_a_web_process_serving_text_and_image_queries_has_no_torch_in_sys_modules(clip_model_dir):
    create_indexed_images([(1, ["zebra"]), (2, ["harbour"]), (3, ["zebra"])])
    env = web_server_env(
        clip_model_dir, IMAGESEARCH_ENCODER="onnx", DJANGO_SETTINGS_MODULE="imagesearch.settings"
    )
    done = subprocess.run(
        [sys.executable, "-c", _WEB_PROCESS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["text"][0] == 200 and seen["text"][1] >= 3
    assert seen["image"][0] == 200 and seen["image"][1] >= 3
    assert seen["heavy"] == []
    assert not seen["libtorch"]
    assert seen["encoder"]["runtime"] == "onnx"
    assert seen["encoder"]["provider"] == "CPUExecutionProvider"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_gunicorn_serving_onnx_maps_no_torch_in_its_master_or_workers(clip_model_dir, tmp_path):
    create_indexed_images([(1, ["zebra"]), (2, ["harbour"])])
    env = web_server_env(clip_model_dir, IMAGESEARCH_ENCODER="onnx")
    server = Gunicorn(workers=2, threads=2, log_path=tmp_path / "gunicorn.log", env=env).start()
    try:
        server.wait_answering("/?" + urlencode({"q": "zebra"}), timeout=180)
        for _ in range(4):  # reaches both workers
            assert server.answers("/?" + urlencode({"q": "zebra"}))
        maps = {
            pid: Path(f"/proc/{pid}/maps").read_text() for pid in [server.proc.pid, *server.worker_pids()]
        }
    finally:
        server.stop()
    assert "onnxruntime" in maps[server.proc.pid]  # the model was loaded before forking
    assert [pid for pid, text in maps.items() if "libtorch" in text] == []
