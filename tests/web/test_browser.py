"""The dashboard in a real browser: open the index, fill a view's form, see the plot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from config.settings import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = ROOT / "var" / "screenshots" / "dashboard.png"
# Flags for a headless Chromium on a machine without network beyond loopback.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (bin/insights test installs it)")


def test_an_instructor_fills_a_form_and_sees_the_plot(live_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{live_server}/")
            card = page.locator('.card[data-name="plot_grades"]')
            expect(card).to_be_visible()
            card.locator('input[name="course"]').fill("demo-101")
            card.locator('button[type="submit"]').click()
            expect(card.locator(".status")).to_have_text("done", timeout=30_000)
            image = card.frame_locator("iframe.output").locator("img")
            expect(image).to_be_visible()
            loaded = image.evaluate("img => img.complete && img.naturalWidth")
            assert loaded and loaded > 100, "the plot image did not load"
            card.scroll_into_view_if_needed()
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=False)
            assert not errors, errors
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
