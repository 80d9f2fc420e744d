"""Smoke tests of the browser infrastructure and the dashboard's sign-in contract."""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from tests.conftest import Platform
from tests.e2e.conftest import shot, sign_in

PAGE = """<!doctype html><html><head><title>e2e smoke</title></head><body>
<h1 id="hello">Hello from Chromium</h1><p id="js">no script</p>
<script>document.getElementById("js").textContent = "script ran " + (6 * 7);</script></body></html>"""


def test_chromium_renders_a_page(browser: Any, page: Any) -> None:
    """The infrastructure alone: Debian's Chromium starts headless, runs script and renders."""
    started = time.monotonic()
    page.goto("data:text/html," + quote(PAGE))
    expect(page).to_have_title("e2e smoke")
    expect(page.locator("#hello")).to_have_text("Hello from Chromium")
    expect(page.locator("#js")).to_have_text("script ran 42")
    assert page.viewport_size == {"width": 1280, "height": 900}
    assert page.evaluate("navigator.userAgent").find("HeadlessChrome") >= 0
    path = shot(page, "smoke-data-url")
    assert path.stat().st_size > 1000
    print(f"browser {browser.version}: launch {browser.launch_seconds:.2f}s, "
          f"first page {time.monotonic() - started:.2f}s")


# The wrong token is rejected by the API with 401, which Chromium itself logs as a console error.
@pytest.mark.allow_console_errors(r"Failed to load resource: the server responded with a status of 401")
def test_wrong_token_shows_an_error(ui_platform: Platform, page: Any) -> None:
    page.goto(ui_platform.base_url + "/")
    expect(page.locator("form#signin")).to_be_visible()
    page.fill("#signin-token", "pm_not-a-real-token")
    page.click("form#signin [type=submit]")
    expect(page.locator("#signin-error")).to_have_text(re.compile(r"\S"))
    expect(page.locator("form#signin")).to_be_visible()
    expect(page.locator('main#view[data-ready="true"]')).to_have_count(0)
    shot(page, "signin-wrong-token")


def test_viewer_signs_in_to_the_overview(ui_platform: Platform, page: Any) -> None:
    token = ui_platform.tokens["viewer"]
    sign_in(page, ui_platform.base_url, token)
    expect(page.locator('main#view[data-page="overview"][data-ready="true"]')).to_be_visible()
    expect(page.locator('nav#nav a[href="#/overview"]')).to_be_visible()
    expect(page.locator("form#signin")).to_be_hidden()
    storage = page.evaluate("""() => ({
        session: Object.entries(sessionStorage).flat(),
        local: Object.entries(localStorage).flat(),
    })""")
    assert any(token in v for v in storage["session"]), "the token should be kept in sessionStorage"
    assert not any(token in v for v in storage["local"]), "the token must not be kept in localStorage"
    shot(page, "overview-viewer")
