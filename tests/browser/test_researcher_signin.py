"""The signed-out researcher pages in a real browser: sign-in and sign-up wear the console's
stylesheet and header (they were plain, unstyled pages before), and signing in still works."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Chromium's own look for a <button> with no author style: a light grey face, dark text.
DEFAULT_BUTTON_BACKGROUND = "rgb(239, 239, 239)"
CONSOLE_ACCENT = "rgb(11, 87, 208)"  # --accent in console/console.css


def styles(page, selector: str) -> dict:
    return page.locator(selector).first.evaluate(
        "el => { const s = getComputedStyle(el);"
        " return {background: s.backgroundColor, color: s.color, radius: s.borderRadius}; }"
    )


def test_the_sign_in_page_is_a_styled_console_page_and_signs_in(
    live_server, page_factory, make_user
):
    # given: a verified researcher account
    make_user("rita")
    page = page_factory("en-US", viewport={"width": 1280, "height": 900})
    # when: they open the sign-in page
    page.goto(f"{live_server.url}/accounts/login/?next=/console/")
    # then: the console's header and stylesheet are there
    header = page.locator("header.top")
    expect(header).to_be_visible()
    expect(header.get_by_role("link", name="Study Platform console")).to_be_visible()
    sheets = page.evaluate("[...document.styleSheets].map(s => s.href || '')")
    assert any(href.endswith("/console/console.css") for href in sheets), sheets
    # and the button is the console's blue button, not the browser's grey default
    button = styles(page, "main button[type=submit]")
    assert button["background"] == CONSOLE_ACCENT != DEFAULT_BUTTON_BACKGROUND, button
    assert button["color"] == "rgb(255, 255, 255)" and button["radius"] == "6px", button
    # and the password field is laid out like the console's other fields
    username_width = page.get_by_label("Username").bounding_box()["width"]
    password_width = page.get_by_label("Password").bounding_box()["width"]
    assert password_width == username_width > 200
    # when: they sign in
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill("pw-rita")
    page.get_by_role("button", name="Sign in").click()
    # then: they land in the console
    expect(page).to_have_url(f"{live_server.url}/console/")


def test_the_sign_up_page_wears_the_console_style_too(live_server, page_factory):
    page = page_factory("en-US")
    page.goto(f"{live_server.url}/accounts/signup/")
    expect(page.locator("header.top")).to_be_visible()
    button = styles(page, "main button[type=submit]")
    assert button["background"] == CONSOLE_ACCENT, button
