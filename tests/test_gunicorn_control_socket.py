"""Each web server started as ./run starts it has gunicorn's control socket in its own data
directory: two instances on one machine (two libraries, or a test's server beside ./run) never
take each other's over, and ``gunicornc -s <data dir>/gunicorn.ctl`` reaches the one meant."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import web_server_env
from tests.support.processes import Gunicorn
from tests.support.waiting import wait_for


def _workers_said_by(socket: Path) -> set[int]:
    gunicornc = Path(sys.executable).with_name("gunicornc")
    said = subprocess.run(
        [str(gunicornc), "-s", str(socket), "-c", "show workers", "-j"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return {worker["pid"] for worker in json.loads(said.stdout)["workers"]}


@pytest.mark.django_db(transaction=True)
def test_two_instances_each_answer_on_the_control_socket_in_their_own_data_directory(
    clip_model_dir, tmp_path
):
    servers = {}
    try:
        for name in ("a", "b"):
            env = web_server_env(clip_model_dir, IMAGESEARCH_DATA_DIR=str(tmp_path / name))
            servers[name] = Gunicorn(workers=1, threads=1, log_path=tmp_path / f"{name}.log", env=env).start()
        for server in servers.values():
            server.wait_answering("/", timeout=180)
        for name, server in servers.items():
            socket = tmp_path / name / "gunicorn.ctl"
            # The master opens it in a thread of its own once the workers are forked.
            wait_for(socket.is_socket, timeout=30, what=f"the control socket {socket}")
            assert _workers_said_by(socket) == set(server.worker_pids())
        assert set(servers["a"].worker_pids()).isdisjoint(servers["b"].worker_pids())
    finally:
        for server in servers.values():
            server.stop()
