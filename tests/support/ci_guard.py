"""Loaded with ``-p tests.support.ci_guard``: under ``CI=true`` a skipped test is a failed test.

CI must never go green by skipping, whatever the reason a test skips (a missing service, an
``importorskip``, a ``skipif`` that holds on the CI machine). On a laptop a skip stays a skip,
with its reason shown by ``-ra``.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"
