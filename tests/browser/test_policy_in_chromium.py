"""The Content-Security-Policy in a real browser: the pages the other browser test does not visit
(the admin's own pages, the API docs) run under it without a violation, and a violation does fail
a test."""

from __future__ import annotations

import pytest

from tests.browser.conftest import PageProblems

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_policy_violation_fails_the_test(chromium):
    problems = PageProblems()
    context = problems.watch(chromium.new_context())
    try:
        context.route(
            "http://policy.test/",
            lambda route: route.fulfill(
                status=200,
                content_type="text/html",
                headers={"Content-Security-Policy": "default-src 'self'"},
                body="<p style='color: red'>styled</p><script>document.title = 'ran'</script>",
            ),
        )
        page = context.new_page()
        page.goto("http://policy.test/")
        expected = ["script-src-elem refused inline on http://policy.test/", "style-src-attr refused inline"]
        for _ in range(100):  # the reports come back to Python asynchronously
            if all(text in " ".join(problems.violations) for text in expected):
                break
            page.wait_for_timeout(50)
        assert page.title() != "ran"  # refused
    finally:
        context.close()
    for text in expected:
        assert text in " ".join(problems.violations)
    with pytest.raises(AssertionError, match="Content-Security-Policy violations"):
        problems.assert_none()


def test_the_admin_and_the_api_docs_run_under_the_policy(live_server, staff_user, library, page):
    base = live_server.url
    pk = library["sunset"][0]
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", staff_user.username)
    page.fill("#id_password", "pw-staff-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")

    # The image list: previews, filters, actions (the admin's scripts run).
    page.goto(f"{base}/admin/gallery/image/")
    assert page.locator("img.image-preview").count() == len(library["all"])
    assert page.evaluate("getComputedStyle(document.querySelector('img.image-preview')).height") == "64px"
    page.check("#action-toggle")
    assert page.inner_text(".action-counter").startswith(f"{len(library['all'])} of {len(library['all'])}")

    for path in (
        f"/admin/gallery/image/{pk}/change/",
        "/admin/gallery/label/",
        "/admin/gallery/label/add/",
    ):
        page.goto(f"{base}{path}")
        page.wait_for_selector("#content-main")
    page.goto(f"{base}/admin/auth/user/{staff_user.pk}/change/")
    page.wait_for_selector("#id_user_permissions_from")  # the admin's scripts built the two-list picker

    # The API docs: Swagger UI renders from static files, under the same policy.
    page.goto(f"{base}/api/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-summary-path")
