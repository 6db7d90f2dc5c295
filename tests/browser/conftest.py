"""A real browser for the page tests: Playwright driving Debian's Chromium (``apt-get install
chromium``). Playwright's own browser download is not used. A test fails on any JavaScript error
or Content-Security-Policy violation on any of its pages. Screenshots of every page the tests
visit go to test-artifacts/screenshots/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.support.constants import ROOT

CHROMIUM = os.environ.get("IMAGESEARCH_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    require_service(Path(CHROMIUM).is_file(), f"Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop registered in this thread between calls, so
    # Django takes the test's own (synchronous, same-thread) database calls for async ones and
    # refuses them. They are not: allow them while the browser runs, and only then.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# Runs in every frame before the page's own scripts. The browser also logs each violation on the
# console; the event says which directive refused what, on which page.
_REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
    window.__reportPolicyViolation(
        `${event.effectiveDirective} refused ${event.blockedURI}`  // a URL, "inline" or "eval"
        + ` on ${event.documentURI} (line ${event.lineNumber})`
    );
}, true);
"""


class PageProblems:
    """JavaScript errors and Content-Security-Policy violations on every page of the browser
    contexts it watches (tabs opened later included)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.violations: list[str] = []

    def watch(self, context):
        context.expose_binding("__reportPolicyViolation", lambda source, text: self.violations.append(text))
        context.add_init_script(_REPORT_VIOLATIONS)
        context.on("weberror", lambda error: self.errors.append(str(error.error)))
        context.on("console", self._console)
        return context

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.violations.append(f"console: {message.text}")

    def assert_none(self) -> None:
        assert not self.errors, f"JavaScript errors on the pages: {self.errors}"
        assert not self.violations, f"Content-Security-Policy violations on the pages: {self.violations}"


@pytest.fixture
def page_problems() -> Iterator[PageProblems]:
    """Watch another context with ``page_problems.watch(context)``; the test fails on any problem."""
    problems = PageProblems()
    yield problems
    problems.assert_none()


@pytest.fixture
def page(chromium, page_problems):
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page_problems.watch(context)
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot():
    """``screenshot(page, "name")`` saves test-artifacts/screenshots/name.png (the whole page)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        # A full-page picture: load the lazy images below the fold too.
        page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
        # A function, not an expression: Playwright evaluates an expression again on every poll,
        # and the pages' policy refuses eval.
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
