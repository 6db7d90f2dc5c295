"""manage.py run by hand agrees with ./run on the data directory from wherever it is run: a
relative IMAGESEARCH_DATA_DIR is taken from the repository root (where ./run runs everything),
not from the shell's current directory; and the secret key ./run keeps there is the one used."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.constants import ROOT


def _showconfig_and_key(cwd, data_dir: str) -> str:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("IMAGESEARCH_", "DJANGO_", "DATABASE_URL"))
    }
    env["IMAGESEARCH_DATA_DIR"] = data_dir
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'imagesearch.settings');"
        "django.setup(); from django.conf import settings;"
        "print('DATA', settings.DATA_DIR); print('DB', settings.DATABASES['default']['NAME']);"
        "print('KEY', settings.SECRET_KEY)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_relative_data_dir_is_the_same_from_any_directory_and_holds_the_key(tmp_path):
    name = f"test-artifacts/data-dir-{os.getpid()}"
    data = ROOT / name
    data.mkdir(parents=True, exist_ok=True)
    try:
        (data / "secret_key").write_text("key-kept-by-run-" + "k" * 40 + "\n")
        elsewhere = _showconfig_and_key(tmp_path, name)
        at_root = _showconfig_and_key(ROOT, name)
        assert elsewhere == at_root
        assert f"DATA {data}\n" in elsewhere
        assert f"DB {data / 'db.sqlite3'}\n" in elsewhere
        assert f"KEY key-kept-by-run-{'k' * 40}\n" in elsewhere
    finally:
        (data / "secret_key").unlink(missing_ok=True)
        data.rmdir()
