"""Dashboard pages, runs that do not block the web process, plots, templates and module static files."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask.testing import FlaskClient

from tasks.app import Insights
from tasks.core.policy import Policy
from tests.conftest import wait_for
from web.app import create_app


def run(client: FlaskClient, kind: str, name: str, **args: Any) -> dict[str, Any]:
    """Start a run as the dashboard does and poll until it is done or failed."""
    started = client.post(f"/run/{kind}/{name}", json=args)
    assert started.status_code == 202, started.get_json()
    url = started.get_json()["result"]

    def finished() -> Any:
        body = client.get(url).get_json()
        return body if body["state"] in ("done", "failed") else None

    return wait_for(finished, what=f"{kind} {name} to finish")


def test_the_index_lists_every_module_with_a_form_per_view_and_query(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert 'id="module-testmodule"' in page and 'id="module-datatypes"' in page
    assert 'data-kind="view" data-name="plot_grades"' in page
    assert 'data-kind="query" data-name="djt_user_event_count"' in page
    card = page[page.index('data-name="plot_grades"') :]
    assert re.search(r'<input name="course" value="" required>', card[: card.index("</form>")])
    for link in ('href="/schema?f=html"', 'href="/event_properties"', "/static/dashboard.js"):
        assert link in page


def test_dashboard_pages_only_run_their_own_scripts(client: FlaskClient) -> None:
    policy = client.get("/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'self'" in policy
    assert (
        client.get("/embed/view/plot_grades?course=x").headers["Content-Security-Policy"].endswith("frame-ancestors *")
    )
    raw_view = client.get("/view/djt_hello_template")
    assert raw_view.headers["Content-Security-Policy"].startswith("sandbox;")


def test_a_view_runs_without_blocking_and_its_result_is_delivered_once(client: FlaskClient) -> None:
    body = run(client, "view", "djt_fake_user_count")
    assert body == {"kind": "view", "name": "djt_fake_user_count", "state": "done", "result": "<html>Users: 2</html>"}
    started = client.post("/run/query/djt_fake_user_count", json={})
    url = started.get_json()["result"]
    wait_for(lambda: client.get(url).get_json()["state"] == "done" or None, what="the query")
    assert client.get(url).status_code == 404  # delivered once


def test_a_failed_run_says_why(client: FlaskClient) -> None:
    body = run(client, "view", "broken_view")
    assert body["state"] == "failed"
    assert "ValueError: this view is broken on purpose" in body["error"]


def test_a_run_with_a_missing_argument_is_refused_before_starting(client: FlaskClient) -> None:
    response = client.post("/run/view/plot_grades", json={})
    assert response.status_code == 400 and "'course'" in response.get_json()["error"]
    assert client.post("/run/handler/x", json={}).status_code == 404
    assert client.get("/result/no-such-task").status_code == 404


def test_a_view_returning_a_figure_is_shown_as_a_stored_png(client: FlaskClient) -> None:
    html = run(client, "view", "plot_grades", course="demo-101")["result"]
    match = re.fullmatch(r'<img src="(/fs/grades/views/plot_grades-[0-9a-f]+\.png)" alt="plot_grades">', html)
    assert match, html
    image = client.get(match.group(1))
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n") and len(image.data) > 5000


def test_templates_are_the_modules_own_and_autoescaped(client: FlaskClient) -> None:
    html = client.get("/view/djt_hello_template", query_string={"who": "<script>alert(1)</script>"}).get_data(
        as_text=True
    )
    assert "Hello &lt;script&gt;alert(1)&lt;/script&gt;, from a template of the test module." in html
    assert '<link rel="stylesheet" href="/modules/testmodule/static/hello.css">' in html


def test_module_static_files_are_served_with_their_content_type(client: FlaskClient) -> None:
    css = client.get("/modules/testmodule/static/hello.css")
    assert css.status_code == 200 and css.mimetype == "text/css" and b".hello" in css.data
    assert client.get("/modules/testmodule/static/missing.css").status_code == 404
    assert client.get("/modules/testmodule/static/../__init__.py").status_code == 404
    assert client.get("/modules/nosuch/static/a.css").status_code == 404


def test_the_embed_page_runs_its_function_with_the_query_string(client: FlaskClient) -> None:
    page = client.get("/embed/view/plot_grades?course=demo-101").get_data(as_text=True)
    assert 'data-autorun="true"' in page and "demo-101" in page
    assert "<header>" not in page


def test_errors_on_pages_are_pages_and_on_the_api_json(client: FlaskClient) -> None:
    page = client.get("/embed/view/no_such_view")
    assert page.status_code == 404 and page.mimetype == "text/html" and "no_such_view" in page.get_data(as_text=True)
    assert client.get("/view/no_such_view").is_json


def test_the_index_prefills_forms_and_runs_the_views_it_can(client: FlaskClient) -> None:
    page = client.get("/?course=demo-101&autorun=1").get_data(as_text=True)
    plot = page[page.index('data-name="plot_grades"') - 60 :]
    assert 'data-autorun="true"' in plot[: plot.index("<h3>")]
    assert '<input name="course" value="demo-101" required>' in plot[: plot.index("</form>")]
    query_card = page[page.index('data-kind="query" data-name="get_grades"') :]
    assert "data-autorun" not in query_card[: query_card.index("<h3>")]  # queries run on request
    assert "data-autorun" not in client.get("/?course=demo-101").get_data(as_text=True)


def test_forms_are_prefilled_with_defaults(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    card = page[page.index('data-name="typed_args"') :]
    form = card[: card.index("</form>")]
    assert '<input name="days" value="7.0" title="float">' in form
    assert '<input name="flag" value="False" title="bool">' in form
    assert '<input name="label" value="" title="str | None">' in form  # None: left empty
    assert '<input name="ids" value="" title="list[int] | None">' in form
    card = page[page.index('data-name="hours_in"') :]
    assert '<input name="days" value="7" title="int">' in card[: card.index("</form>")]
    assert "_private_total" not in page


def test_a_failed_run_shows_its_traceback_to_authors_only(client: FlaskClient, secured: Insights) -> None:
    """Auth off (an author's machine) or a token allowed ``tracebacks``: the traceback; any other token: not."""
    body = run(client, "view", "broken_view")
    assert body["traceback"].startswith("Traceback") and "broken on purpose" in body["traceback"], body
    web = create_app(secured).test_client()
    suffix = uuid.uuid4().hex[:8]
    author = secured.tokens.create(f"author-{suffix}", Policy(allow=("view:*", "tracebacks")))
    reader = secured.tokens.create(f"reader-{suffix}", Policy(allow=("view:*",)))
    for token, shown in ((author, True), (reader, False)):
        web.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        body = run(web, "view", "broken_view")
        assert "this view is broken on purpose" in body["error"]
        assert ("traceback" in body) is shown, body
