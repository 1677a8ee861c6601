"""The API docs in a real browser with no network beyond the platform: Swagger UI is served from
the platform's own static files and runs under the Content-Security-Policy."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser]


def test_the_api_docs_render_offline_under_the_csp(asgi_server, page_factory, owner, artifacts):
    # given: a browser that can reach nothing but the platform (no CDN)
    page = page_factory()
    outside: list[str] = []

    def only_the_platform(route) -> None:
        if route.request.url.startswith(asgi_server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_platform)
    # when: a signed-in researcher opens the docs
    page.goto(f"{asgi_server}/accounts/login/")
    page.get_by_label("Username").fill(owner.username)
    page.get_by_label("Password").fill("pw-" + owner.username)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{asgi_server}/api/docs/")
    # then: Swagger UI renders the schema (title and an operation), having asked no other host
    page.get_by_role("heading", name="Study Platform researcher API").wait_for()
    page.locator(".opblock-summary-path", has_text="/api/studies/").first.wait_for()
    page.screenshot(path=str(artifacts / "api-docs.png"), full_page=False)
    assert outside == []
