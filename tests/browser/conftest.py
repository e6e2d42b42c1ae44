"""Headless Chromium (Debian's package) driven by Playwright, for the report and play-page tests.

The tests skip, saying why, only where Chromium or the playwright package cannot be had; .ci/run
installs both. Set KNOBCAP_SCREENSHOTS=DIR to keep screenshots of what the browser showed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-extensions", "--disable-sync", "--no-first-run", "--mute-audio",
                 "--autoplay-policy=no-user-gesture-required"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("KNOBCAP_CHROMIUM"), "chromium", "chromium-browser"):
        if not candidate:
            continue
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium on this machine (apt-get install chromium, as .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


@pytest.fixture
def screenshot():
    folder = os.environ.get("KNOBCAP_SCREENSHOTS")

    def take(page, name: str) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)

    return take
