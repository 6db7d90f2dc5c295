"""Importing faiss in a process of ours leaves no line in its log: faiss's loader reports, at
INFO, the per-CPU builds it "could not load", which this wheel does not need (one library that
picks its AVX2 or AVX-512 code at run time)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.processes import ROOT


def test_importing_faiss_logs_nothing_and_faiss_searches():
    code = (
        "import django; django.setup()\n"
        "import logging, numpy as np\n"
        "logging.getLogger().setLevel(logging.INFO)\n"
        "import faiss\n"
        "index = faiss.IndexFlatIP(4); index.add(np.eye(4, dtype='float32'))\n"
        "print(index.search(np.eye(4, dtype='float32')[2:3], 1)[1][0][0])\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "imagesearch.settings", "IMAGESEARCH_LOG_LEVEL": "INFO"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    assert "faiss" not in done.stderr, done.stderr
