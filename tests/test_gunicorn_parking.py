"""The web server as ./run starts it parks the keep-alive connection of a client it refused for
its rate limit: that connection gets at most about one answer a second however fast it asks,
no thread waits meanwhile, and another client is answered at once."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlencode

import pytest

from tests.conftest import web_server_env
from tests.factories import create_indexed_images
from tests.support.processes import Gunicorn


@pytest.mark.worker  # media and index where the server's processes look: the data directory
@pytest.mark.django_db(transaction=True)
def test_a_refused_clients_connection_gets_at_most_one_answer_a_second(clip_model_dir, tmp_path):
    create_indexed_images([(1, ["zebra"]), (2, ["harbour"])])
    env = web_server_env(clip_model_dir, IMAGESEARCH_RATE_LIMIT_TEXT="2/d")
    server = Gunicorn(workers=1, threads=2, log_path=tmp_path / "gunicorn.log", env=env).start()
    try:
        server.wait_answering("/", timeout=180)
        flooder = http.client.HTTPConnection(
            "127.0.0.1", server.port, timeout=30, source_address=("127.0.0.7", 0)
        )
        statuses: list[int] = []
        retry_after = None
        end = time.monotonic() + 3.0
        while time.monotonic() < end:  # back to back on one keep-alive connection
            flooder.request("GET", "/?" + urlencode({"q": f"zebra {len(statuses)}"}))
            response = flooder.getresponse()
            response.read()
            statuses.append(response.status)
            retry_after = response.getheader("Retry-After") or retry_after
        assert statuses[:2] == [200, 200] and set(statuses[2:]) == {429}
        assert retry_after is not None
        assert len(statuses) <= 2 + 5  # not hundreds: parked about a second after each refusal

        other = http.client.HTTPConnection(
            "127.0.0.1", server.port, timeout=30, source_address=("127.0.0.8", 0)
        )
        other.request("GET", "/?" + urlencode({"q": "harbour"}))
        assert other.getresponse().status == 200
    finally:
        server.stop()
