"""Browser tests: Playwright drives a real headless Chromium against a real running platform.

- The browser is Debian's `chromium` (`apt-get install chromium`), launched through `executable_path`
  (CHROMIUM_PATH, else `chromium` on PATH, else /usr/bin/chromium). Browsers are never downloaded
  (`playwright install` is not used). Without one the tests are skipped with a reason, unless
  REQUIRE_BROWSER=1 (CI), which fails them.
- `ui_platform`: the API and one worker per queue, on SQLite only (browser flows are about the UI;
  the API suite runs on both databases).
- `page`: a fresh context and page per test. Any console error or uncaught page exception fails the
  test at teardown (`@pytest.mark.allow_console_errors(regex, ...)` lets expected ones through);
  a failed test leaves a full-page screenshot in test-artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LLM_KEY, ROOT, Platform, new_database

REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
AI4I = ROOT / "data" / "samples" / "ai4i2020.csv"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 20_000  # every Playwright action, navigation and wait_for_*; the API answers in well under a second
EXPECT_TIMEOUT_MS = 10_000  # `expect(...)` assertions (Playwright's default, 5 s, is tight on a busy 2-CPU runner)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_console_errors(*patterns): console errors matching one of these "
                                       "regexes (re.search) do not fail the test")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so the `page` fixture knows at teardown if the test failed."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


# ----------------------------------------------------------------------------------- browser
def chromium_path() -> str | None:
    """CHROMIUM_PATH, else `chromium` on PATH, else /usr/bin/chromium; None if that is not an executable."""
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    path = chromium_path()
    if path is None:
        where = os.environ.get("CHROMIUM_PATH") or "chromium on PATH or /usr/bin/chromium"
        reason = (f"no Chromium ({where}): install Debian's with `sudo apt-get install chromium` or set "
                  "CHROMIUM_PATH to a Chromium binary (browsers are never downloaded by `playwright install`)")
        if REQUIRE_BROWSER:
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with sync_playwright() as pw:
        started = time.monotonic()
        b = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        b.launch_seconds = time.monotonic() - started  # type: ignore[attr-defined]
        yield b
        b.close()


# ----------------------------------------------------------------------------------- platform
@pytest.fixture(scope="package")  # stopped when tests/e2e is done, not idling beside later tests
def ui_platform(browser: Any, redis_base: tuple[str, list[int]], llm_server: Any) -> Iterator[Platform]:
    """A real platform (API + gan, ml, llm workers) on SQLite for the browser tests. It takes `browser`
    so that without Chromium the tests skip (or fail) before a platform is started for nothing."""
    base, dbs = redis_base
    # dbs[0]/dbs[1]: the `platform` fixture (SQLite/PostgreSQL); dbs[2]: tests/unit/test_logging_task.py
    redis_url = f"{base}/{dbs[3]}"
    env = {"OPENAI_BASE_URL": llm_server.base_url, "OPENAI_API_KEY": LLM_KEY, "LLM_MODEL": "loopback-7b",
           "LLM_PROVIDER": "template", "LLM_BACKOFF_SECONDS": "0.05", "LLM_TIMEOUT_SECONDS": "5",
           "LLM_MAX_ATTEMPTS": "3",
           # the shipped AI4I sample (~0.5 MB) with room to spare; the default test platform allows 2 MiB
           "DATASET_MAX_BYTES": str(max(16 * 1024**2, 4 * AI4I.stat().st_size))}
    with new_database("sqlite") as url:
        p = Platform(url, redis_url, "ui", extra_env=env).start()
        try:
            yield p
        finally:
            p.stop()


# ----------------------------------------------------------------------------------- page
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:150] or "page"


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as test-artifacts/screenshots/<name>.png; returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{_safe(name)}.png"
    page.evaluate("window.scrollTo(0, 0)")  # else the sticky top bar is painted where the page was scrolled to
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A new context (1280x900) and page; fails the test on console errors or uncaught exceptions."""
    marker = request.node.get_closest_marker("allow_console_errors")
    allowed = [re.compile(p) for p in (marker.args if marker else ())]
    problems: list[str] = []

    def on_console(msg: Any) -> None:
        if msg.type == "error" and not any(p.search(msg.text) for p in allowed):
            loc = msg.location or {}
            where = f" ({loc.get('url')}:{loc.get('lineNumber')})" if loc.get("url") else ""
            problems.append(f"console error: {msg.text}{where}")

    def on_pageerror(exc: Any) -> None:
        problems.append(f"uncaught exception: {exc}")

    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    pg.on("console", on_console)
    pg.on("pageerror", on_pageerror)
    try:
        yield pg
    finally:
        rep = getattr(request.node, "rep_call", None)
        if ((rep is not None and rep.failed) or problems) and not pg.is_closed():
            try:
                saved = shot(pg, f"FAILED-{request.node.nodeid}")
                print(f"screenshot: {saved}")
            except Exception as exc:  # noqa: BLE001 - a screenshot must not hide the real failure
                print(f"screenshot failed: {exc}")
        context.close()
    if problems:
        pytest.fail(f"{len(problems)} browser error(s) during the test:\n" + "\n".join(problems), pytrace=False)


def sign_in(page: Any, base_url: str, token: str) -> None:
    """Open the dashboard, sign in with `token` and wait until the first page has its data."""
    page.goto(base_url + "/")
    page.fill("#signin-token", token)
    page.click("form#signin [type=submit]")
    page.wait_for_selector('main#view[data-ready="true"]')
