"""Under CI=true every skip fails the run (tests/support/ci_guard.py); elsewhere a skip is a skip.

Proven on a deliberately skipped test, run by a pytest of its own with the project's options.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SKIPPING = """
import pytest

def test_skipped_on_purpose():
    pytest.skip("a service this machine lacks")

@pytest.mark.skipif(True, reason="a condition that holds here")
def test_skipped_by_a_marker():
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_an_expected_failure():
    assert False
"""


def _run(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.support.ci_guard",
            "-p",
            "no:cacheprovider",
            "-q",
            "-p",
            "no:django",
            str(tmp_path / "test_skipping.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_skipped_test_fails_the_run_with_its_reason(tmp_path, ci):
    result = _run(tmp_path, ci)
    assert result.returncode == 1, result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    # A skip in the test body fails; one in setup (a skipif marker) errors: both fail the run.
    assert "1 failed" in summary and "1 error" in summary and "1 xfailed" in summary
    assert "skipped" not in summary
    prefix = "skipped under CI=true, where every test must run: "
    assert f"{prefix}Skipped: a service this machine lacks" in result.stdout
    assert f"{prefix}Skipped: a condition that holds here" in result.stdout


def test_on_a_laptop_a_skip_stays_a_skip(tmp_path):
    result = _run(tmp_path, "")
    assert result.returncode == 0, result.stdout
    assert "2 skipped, 1 xfailed" in result.stdout
