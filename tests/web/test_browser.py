"""The dashboard in a real browser: the index and its plots, stored files, login and embedding with auth on."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import ROOT, Settings
from tasks.app import Insights, create_insights
from tasks.core.policy import Policy
from tasks.core.tokens import TokenStore
from tests.conftest import Pipeline, serving, serving_wsgi
from web.auth import COOKIE

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)  # 1x1
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

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (bin/insights test installs it)"),
]


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


def test_a_stored_html_page_and_a_stored_script_cannot_run(live_server: str, insights: Insights) -> None:
    """What any event sender may make a module store (an .html, .svg, .js) is a download, never a
    document or a script of the dashboard's origin; stored PNGs still show."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    folder = f"stored-{uuid.uuid4().hex}"
    store = insights.services.fs("grades")
    files = {
        "page.html": b"<html><script src='script.js'></script><script>window.pwned = 'inline'</script></html>",
        "image.svg": b"<svg xmlns='http://www.w3.org/2000/svg'><script>window.pwned = 'svg'</script></svg>",
        "script.js": b"window.pwned = 'stored script';",
        "plot.png": PNG,
    }
    for name, data in files.items():
        with store.open(f"{folder}/{name}", "wb") as f:
            f.write(data)
    base = f"{live_server}/fs/grades/{folder}"
    probe = (  # a page of the dashboard's origin (without its CSP) that includes the stored files
        f"<html><body><script>window.probe = 'ran'</script><script src='{base}/script.js'></script>"
        f"<img id='plot' src='{base}/plot.png'></body></html>"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route(f"{live_server}/probe", lambda route: route.fulfill(body=probe, content_type="text/html"))
            page.goto(f"{live_server}/probe", wait_until="load")
            assert page.evaluate("window.probe") == "ran"  # scripts of the page itself run ...
            assert page.evaluate("window.pwned") is None  # ... the stored one does not
            assert page.evaluate("document.getElementById('plot').naturalWidth") == 1  # the PNG shows
            for name in ("page.html", "image.svg"):
                # the navigation turns into a download (goto then fails)
                with page.expect_download(timeout=10_000) as download, contextlib.suppress(PlaywrightError):
                    page.goto(f"{base}/{name}")
                assert download.value.suggested_filename == name
                assert page.evaluate("window.pwned") is None
        finally:
            browser.close()


@pytest.fixture(scope="module")
def secured_server(settings: Settings, worker: Pipeline) -> Iterator[tuple[str, TokenStore]]:
    """The web app with INSIGHTS_AUTH=on over real HTTP; yields its base URL and its token store."""
    app = create_insights(dataclasses.replace(settings, auth=True))
    with serving(app) as url:
        yield url, app.tokens
    app.services.close()


@contextlib.contextmanager
def another_site(html: str) -> Iterator[str]:
    """Serve one page at http://localhost:<port>/: another site than the app's 127.0.0.1 (a real
    local server: Chromium blocks a page it cannot place from framing local addresses)."""

    def page(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [html.encode()]

    with serving_wsgi(page, host="localhost") as url:
        yield f"{url}/"


def test_an_lms_iframe_shows_an_embedded_plot_with_its_token_and_logs_no_one_in(
    secured_server: tuple[str, TokenStore],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, store = secured_server
    token = store.create(f"lms-{uuid.uuid4().hex}", Policy(("view:plot_grades", "file:grades")))
    embed = f"{base}/embed/view/plot_grades?course=demo-101&access_token={token}"
    lms_page = f"<iframe src='{embed}' width=900 height=600></iframe>"
    with sync_playwright() as playwright, another_site(lms_page) as lms:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(lms)
            card = page.frame_locator("iframe").locator(".card")
            expect(card.locator(".status")).to_have_text("done", timeout=30_000)
            image = card.frame_locator("iframe.output").locator("img")
            expect(image).to_be_visible()
            loaded = image.evaluate("img => img.complete && img.naturalWidth")
            assert loaded and loaded > 100, "the plot image did not load"
            assert context.cookies() == []  # the token stayed in the page
            opened = page.goto(f"{base}/")
            assert opened is not None and opened.status == 401  # the embedded page logged no one in
        finally:
            browser.close()


def test_login_takes_the_token_from_the_form_and_refuses_a_cross_site_post(
    secured_server: tuple[str, TokenStore],
) -> None:
    from playwright.sync_api import sync_playwright

    base, store = secured_server
    token = store.create(f"login-{uuid.uuid4().hex}", Policy(("schema",)))
    forged = (  # another site's page posting its own token to /login (login CSRF)
        f"<form method='post' action='{base}/login'><input name='access_token' value='{token}'></form>"
        "<script>document.forms[0].submit()</script>"
    )
    with sync_playwright() as playwright, another_site(forged) as evil_site:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{base}/login?access_token={token}")  # a link only shows the form
            assert context.cookies() == []
            page.fill("input[name='access_token']", token)
            page.click("button[type='submit']")
            page.wait_for_url(f"{base}/")
            assert page.locator('a[href="/reports"]').is_visible()  # the dashboard
            assert [cookie["name"] for cookie in context.cookies()] == [COOKIE]

            victim = browser.new_context()
            evil = victim.new_page()
            with evil.expect_response(f"{base}/login") as answer:
                evil.goto(evil_site)
            assert answer.value.status == 403
            assert victim.cookies() == []

            page.click("form.logout button")  # logging out is the dashboard's button, a POST
            page.wait_for_url(f"{base}/login")
            assert context.cookies() == []
        finally:
            browser.close()


def test_a_failed_run_shows_its_error_and_traceback_not_expired(live_server: str) -> None:
    """`/result` answers a failed run 200 `state: failed`: the page shows why (auth off: and the traceback)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{live_server}/")
            card = page.locator('.card[data-name="broken_view"]')
            card.locator('button[type="submit"]').click()
            expect(card).to_have_attribute("data-state", "failed", timeout=30_000)
            expect(card.locator(".status")).to_contain_text("ValueError: this view is broken on purpose")
            expect(card.locator(".status")).not_to_contain_text("expired")
            expect(card.locator("pre.traceback")).to_contain_text("Traceback (most recent call last)")
        finally:
            browser.close()
