"""Authentication and policy: tokens, what they may call, locked parameters, the tokens command."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shlex
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from config.settings import ROOT
from tasks.app import Insights
from tasks.core.policy import LockedParameter, Policy
from tasks.core.tokens import TokenStore
from tests.conftest import CLI, Pipeline, as_token, new_token, send, wait_for
from web.app import create_app
from web.auth import AUTH_OFF_WARNING, COOKIE

LOCKED = "parameter 'course' is locked to this token's value"


def error_of(response: Any) -> str:
    """The error message of a JSON error (or the text of an HTML error page)."""
    if response.is_json:
        body = response.get_json()
        assert body["status"] == response.status_code
        return str(body["error"])
    return str(response.get_data(as_text=True))


# Every endpoint, with the resource a policy names it by and its status when allowed.
ENDPOINTS = [
    ("GET", "/view/djt_fake_user_count", {}, "view:djt_fake_user_count", 200),
    ("POST", "/view/djt_hello_template", {"json": {"who": "x"}}, "view:djt_hello_template", 200),
    ("GET", "/embed/view/djt_fake_user_count", {}, "view:djt_fake_user_count", 200),
    ("GET", "/query/djt_event_count", {}, "query:djt_event_count", 200),
    ("POST", "/query/echo", {"data": {"greeting": "hi"}}, "query:echo", 200),
    ("POST", "/run/query/djt_fake_user_count", {"json": {}}, "query:djt_fake_user_count", 202),
    ("POST", "/event", {"data": json.dumps({"auth_test": "post"})}, "event", 202),
    ("GET", "/event", {"query_string": {"msg": json.dumps({"auth_test": "get"})}}, "event", 202),
    ("POST", "/httpevent", {"data": json.dumps({"auth_test": "post original"})}, "event", 202),  # the original's URL
    ("GET", "/httpevent", {"query_string": {"msg": json.dumps({"auth_test": "get original"})}}, "event", 202),
    ("GET", "/receipt/no-such-receipt", {}, "event", 404),
    ("GET", "/batch/0123", {}, "batches", 404),
    ("GET", "/schema", {}, "schema", 200),
    ("GET", "/schema?f=html", {}, "schema", 200),
    ("GET", "/event_properties", {}, "schema", 200),
    ("GET", "/", {}, "schema", 200),
    ("GET", "/fs/testmodule/no-such-file.txt", {}, "file:testmodule", 404),
]


def call(client: FlaskClient, method: str, path: str, kwargs: dict[str, Any]) -> Any:
    response = client.open(path, method=method, **kwargs)
    if response.status_code == 202 and path in ("/event", "/httpevent"):  # events handled before other tests count
        send_receipt = response.get_json()["receipt"]
        wait_for(lambda: client.get(f"/receipt/{send_receipt}").get_json()["state"] == "done", what="events handled")
    return response


@pytest.mark.parametrize(("method", "path", "kwargs", "resource", "status"), ENDPOINTS)
def test_every_endpoint_is_under_the_policy(
    web: FlaskClient, store: TokenStore, method: str, path: str, kwargs: dict[str, Any], resource: str, status: int
) -> None:
    allowed = new_token(store, resource, "event")  # "event" too, to wait for posted events
    assert call(as_token(web, allowed), method, path, kwargs).status_code == status

    denied = call(as_token(web, new_token(store, "*", deny=(resource,))), method, path, kwargs)
    assert denied.status_code == 403
    assert f"may not use {resource}" in error_of(denied)
    other = call(as_token(web, new_token(store, "query:something_else")), method, path, kwargs)
    assert other.status_code == 403  # nothing is allowed unless a pattern allows it

    anonymous = call(web, method, path, kwargs)
    assert anonymous.status_code == 401 and "authentication required" in error_of(anonymous)
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert call(as_token(web, "not-a-token"), method, path, kwargs).status_code == 401

    looked_up = store.lookup(allowed)
    assert looked_up is not None and store.revoke(looked_up.name)
    revoked = call(as_token(web, allowed), method, path, kwargs)
    assert revoked.status_code == 401 and "revoked" in error_of(revoked)


def test_static_files_are_public_and_unknown_paths_need_a_token(web: FlaskClient, store: TokenStore) -> None:
    assert web.get("/static/dashboard.js").status_code == 200
    assert web.get("/modules/testmodule/static/hello.css").status_code == 200
    assert web.get("/no/such/path").status_code == 401
    assert as_token(web, new_token(store, "schema")).get("/no/such/path").status_code == 404


SAME_ORIGIN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}  # what a browser sends from /login


def login(
    browser: FlaskClient, token: str, headers: dict[str, str] = SAME_ORIGIN, base_url: str | None = None, **form: str
) -> Any:
    """Submit the login form as a browser does (the test client's host is localhost)."""
    return browser.post("/login", data={"access_token": token, **form}, headers=headers, base_url=base_url)


def test_the_token_may_come_from_the_query_string_or_a_cookie_set_by_login(web: FlaskClient, store: TokenStore) -> None:
    token = new_token(store, "query:djt_event_count", "query:echo", "schema")
    response = web.get("/query/echo", query_string={"access_token": token})
    assert response.status_code == 200
    assert response.get_json() == {"greeting": "hello", "params": {}}  # the token is not an argument

    browser = web.application.test_client()
    answer = login(browser, token)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}={token}") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert browser.get("/query/djt_event_count").status_code == 200
    assert browser.get("/").status_code == 200
    assert browser.get("/view/djt_fake_user_count").status_code == 403
    assert 'action="/logout"' in browser.get("/").get_data(as_text=True)  # the dashboard's log out button
    assert browser.get("/logout").status_code == 405  # a link logs no one out
    assert browser.get("/query/djt_event_count").status_code == 200
    logged_out = browser.post("/logout", data={"next": "/login"}, headers=SAME_ORIGIN)
    assert logged_out.status_code == 303 and logged_out.headers["Location"] == "/login"
    assert browser.get("/query/djt_event_count").status_code == 401

    assert login(browser, "nope").status_code == 401
    assert browser.post("/login", headers=SAME_ORIGIN).status_code == 401
    assert login(browser, token, next="//evil.example").status_code == 400
    assert "Set-Cookie" not in login(browser, token, next="//evil.example").headers
    assert login(browser, token, next="/query/djt_event_count").headers["Location"] == "/query/djt_event_count"
    assert login(browser, token, headers={}).status_code == 303  # not a browser (no Origin): no CSRF to refuse


def test_a_login_link_shows_the_form_and_sets_no_cookie(web: FlaskClient, store: TokenStore) -> None:
    token = new_token(store, "schema")
    browser = web.application.test_client()
    page = browser.get("/login", query_string={"access_token": token, "next": "/reports"})
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "Set-Cookie" not in page.headers
    html = page.get_data(as_text=True)
    assert '<form method="post" action="/login"' in html and 'name="access_token"' in html
    assert 'name="next" value="/reports"' in html and token not in html
    assert browser.get("/").status_code == 401  # the link logged no one in
    assert browser.get("/login", query_string={"next": "https://evil.example"}).status_code == 400


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://other.localhost"},
    ],
)
def test_a_cross_site_login_post_is_403_and_sets_no_cookie(
    web: FlaskClient, store: TokenStore, headers: dict[str, str]
) -> None:
    browser = web.application.test_client()
    refused = login(browser, new_token(store, "schema"), headers=headers)
    assert refused.status_code == 403 and "cross-site" in error_of(refused)
    assert "Set-Cookie" not in refused.headers
    assert browser.get("/").status_code == 401


def test_an_https_origin_posting_to_an_http_server_is_cross_site(web: FlaskClient, store: TokenStore) -> None:
    browser = web.application.test_client()
    token = new_token(store, "schema")
    for origin in ("https://localhost", "http://localhost:8080", "null"):
        refused = login(browser, token, headers={"Origin": origin})  # an older browser: Origin only
        assert refused.status_code == 403 and "Set-Cookie" not in refused.headers, origin
    for origin in ("http://localhost", "http://LOCALHOST:80"):
        assert login(browser, token, headers={"Origin": origin}).status_code == 303, origin
    secure = login(browser, token, headers={"Origin": "https://localhost"}, base_url="https://localhost")
    assert secure.status_code == 303


def test_logout_is_a_post_from_this_servers_pages(web: FlaskClient, store: TokenStore) -> None:
    for method in ("GET", "HEAD"):
        answer = web.open("/logout", method=method)  # no token: still 405, not 401
        assert answer.status_code == 405 and answer.headers["Allow"] == "POST", method
    assert web.get("/logout").get_json()["status"] == 405
    browser = web.application.test_client()
    token = new_token(store, "schema")
    login(browser, token)
    for headers in (
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://localhost"},
    ):
        refused = browser.post("/logout", headers=headers)  # another site's form logging the user out
        assert refused.status_code == 403 and "cross-site logout" in error_of(refused)
        assert "Set-Cookie" not in refused.headers
    assert browser.get("/").status_code == 200  # still logged in
    answer = browser.post("/logout", headers=SAME_ORIGIN)
    assert answer.status_code == 200 and answer.get_json() == {"logged_out": True}
    assert browser.get("/").status_code == 401
    assert browser.post("/logout", data={"next": "//evil.example"}, headers=SAME_ORIGIN).status_code == 400


def test_the_header_wins_and_a_bad_header_does_not_fall_back_to_the_cookie(web: FlaskClient, store: TokenStore) -> None:
    good = new_token(store, "query:djt_event_count")
    browser = web.application.test_client()
    login(browser, good)
    assert browser.get("/query/djt_event_count").status_code == 200
    assert browser.get("/query/djt_event_count", headers={"Authorization": "Bearer wrong"}).status_code == 401
    schema_only = new_token(store, "schema")
    assert browser.get("/query/djt_event_count", headers={"Authorization": f"Bearer {schema_only}"}).status_code == 403


def test_an_embedded_page_hands_its_token_to_its_script_and_sets_no_cookie(web: FlaskClient, store: TokenStore) -> None:
    token = new_token(store, "query:djt_fake_user_count")
    frame = web.application.test_client()
    page = frame.get("/embed/query/djt_fake_user_count", query_string={"access_token": token})
    assert page.status_code == 200 and "Set-Cookie" not in page.headers
    assert f'<meta name="insights-token" content="{token}">' in page.get_data(as_text=True)
    assert frame.get("/").status_code == 401  # a link to an embedded page logs no one in
    frame.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"  # as the page's script sends it
    started = frame.post("/run/query/djt_fake_user_count", json={})
    assert started.status_code == 202
    url = started.get_json()["result"]
    other = as_token(web, new_token(store, "query:djt_fake_user_count"))
    assert other.get(url).status_code == 403  # a run's result is for the token that started it
    done = wait_for(lambda: (r := frame.get(url).get_json())["state"] == "done" and r, what="the run")
    assert done["result"] == 2


def test_aliases_are_one_resource(web: FlaskClient, store: TokenStore) -> None:
    allowed = as_token(web, new_token(store, "query:djt_three_name"))
    assert allowed.get("/query/edx_djt_three_name").status_code == 200
    denied = as_token(web, new_token(store, "query:*", deny=("query:djt_three_name",)))
    assert denied.get("/query/edx.djt_three_name").status_code == 403
    assert denied.get("/query/djt_event_count").status_code == 200


def test_a_locked_parameter_cannot_be_overridden_through_any_channel(web: FlaskClient, store: TokenStore) -> None:
    client = as_token(web, new_token(store, "query:echo", course="c1"))
    attempts: list[dict[str, Any]] = [
        {"query_string": {"course": "c2"}},
        {"query_string": [("course", "c1"), ("course", "c2")]},
        {"data": {"course": "c2"}},
        {"json": {"course": "c2"}},
        {"json": {"course": ["c1"]}},
        {"query_string": {"course": "c1"}, "json": {"course": "c2"}},
        {"query_string": {"course": "c2"}, "json": {"course": "c1"}},
        {"query_string": {"course": "c2"}, "data": {"course": "c1"}},
        {"query_string": {"course": "c1"}, "data": {"course": "c2"}},
    ]
    for attempt in attempts:
        response = client.post("/query/echo", **attempt)
        assert response.status_code == 403, attempt
        assert error_of(response) == LOCKED, attempt
        started = client.post("/run/query/echo", **attempt)
        assert started.status_code == 403, attempt
    locked = {"greeting": "hello", "params": {"course": "c1"}}
    assert client.get("/query/echo").get_json() == locked
    assert client.get("/query/echo?course=c1").get_json() == locked
    assert client.post("/query/echo", json={"params": {"course": "c2"}}).get_json() == locked
    assert client.post("/query/echo", json={"greeting": "hi", "page": "2"}).get_json() == {
        "greeting": "hi",
        "params": {"page": "2", "course": "c1"},
    }


def test_a_locked_parameter_a_function_does_not_take_is_dropped(web: FlaskClient, store: TokenStore) -> None:
    instructor = as_token(web, new_token(store, "query:*", course="abc"))
    assert instructor.get("/query/grades_array").get_json() == [[3, 4, 5], [6, 7, 8]]
    assert instructor.get("/query/grades_array?course=xyz").status_code == 403
    assert instructor.get("/query/djt_fake_user_count").get_json() == 2  # a global query: the lock is dropped
    assert instructor.get("/query/djt_fake_user_count?course=abc").get_json() == 2
    assert instructor.get("/query/djt_fake_user_count?course=xyz").status_code == 403


def test_a_student_token_sees_only_its_own_count(web: FlaskClient, store: TokenStore) -> None:
    alice, bob = f"alice-{uuid.uuid4().hex}", f"bob-{uuid.uuid4().hex}"
    lms = as_token(web, new_token(store, "event"))
    send(lms, [{"user": alice, "n": 1}, {"user": alice, "n": 2}, {"user": bob}])
    student = as_token(web, new_token(store, "query:djt_user_event_count", user=alice))
    assert student.get("/query/djt_user_event_count").get_json() == 2
    assert student.get("/query/djt_user_event_count", query_string={"user": alice}).get_json() == 2
    assert student.post("/query/djt_user_event_count", json={"user": alice}).get_json() == 2
    for attempt in ({"query_string": {"user": bob}}, {"data": {"user": bob}}, {"json": {"user": bob}}):
        response = student.post("/query/djt_user_event_count", **attempt)
        assert response.status_code == 403 and "'user' is locked" in error_of(response)
    assert student.get("/query/djt_event_count").status_code == 403


def test_a_token_locked_to_a_user_may_only_post_events_about_that_user(web: FlaskClient, store: TokenStore) -> None:
    ada, bob = f"ada-{uuid.uuid4().hex}", f"bob-{uuid.uuid4().hex}"
    student = as_token(web, new_token(store, "event", user=ada))
    events: list[dict[str, Any]] = [
        {"user": ada, "n": 0},
        {"user": bob, "n": 1},
        {"username": ada, "user": bob, "n": 2},  # one field names ada, another bob
        {"context": {"user_id": bob}, "n": 3},
        {"actor": {"account": {"name": bob}}, "n": 4},
        {"event_type": "anonymous", "n": 5},
        {"username": ada, "user": ada, "context": {"user_id": ada}, "n": 6},
    ]
    response = student.post("/event", data=json.dumps(events))
    assert response.status_code == 202, response.get_json()
    answer = response.get_json()
    assert answer["accepted"] == 2
    assert [r["index"] for r in answer["rejected"]] == [1, 2, 3, 4, 5]
    reasons = [r["error"] for r in answer["rejected"]]
    assert all(f"may only send events about user {ada!r}" in reason for reason in reasons)
    assert reasons[0].startswith(f"item 1 is about user {bob!r}") and "names no user" in reasons[4]
    wait_for(lambda: student.get(f"/receipt/{answer['receipt']}").get_json()["state"] == "done", what="events")

    counts = as_token(web, new_token(store, "query:djt_user_event_count"))
    assert counts.get("/query/djt_user_event_count", query_string={"user": ada}).get_json() == 2
    assert counts.get("/query/djt_user_event_count", query_string={"user": bob}).get_json() == 0
    refused = student.post("/event", data=f'{{"user": "{bob}"}}\n{{"username": "{bob}"}}\n')
    assert refused.status_code == 400 and "no valid event" in error_of(refused) and "line 1" in error_of(refused)


def test_a_receipt_is_readable_only_by_the_token_that_posted_it(web: FlaskClient, store: TokenStore) -> None:
    lms, other = as_token(web, new_token(store, "event")), as_token(web, new_token(store, "event", "batches"))
    receipt = lms.post("/event", data=json.dumps({"auth_test": "receipt"})).get_json()["receipt"]
    assert lms.get(f"/receipt/{receipt}").status_code == 200
    refused = other.get(f"/receipt/{receipt}")
    assert refused.status_code == 404  # as for an unknown receipt: a guessed one tells nothing
    assert error_of(refused) == error_of(lms.get("/receipt/1-1")).replace("'1-1'", repr(receipt))
    wait_for(lambda: lms.get(f"/receipt/{receipt}").get_json()["state"] == "done", what="the events to be handled")
    assert other.get(f"/receipt/{receipt}").status_code == 404


def test_batch_records_need_the_batches_resource(web: FlaskClient, store: TokenStore) -> None:
    lms = as_token(web, new_token(store, "event"))
    receipt = lms.post("/event", data=json.dumps({"auth_test": "batch", "secret": "s3cret"})).get_json()["receipt"]
    state = wait_for(lambda: (r := lms.get(f"/receipt/{receipt}").get_json())["state"] == "done" and r, what="events")
    batch = state["batches"][0]
    refused = lms.get(f"/batch/{batch}")
    assert refused.status_code == 403 and "may not use batches" in error_of(refused)
    operator = as_token(web, new_token(store, "batches"))
    record = operator.get(f"/batch/{batch}")
    assert record.status_code == 200 and record.get_json()["batch"] == batch
    assert operator.get(f"/receipt/{receipt}").status_code == 403  # receipts are for event senders


def test_event_tokens_and_query_tokens_are_separate_scopes(web: FlaskClient, store: TokenStore) -> None:
    events_only = as_token(web, new_token(store, "event"))
    send(events_only, {"auth_test": "scope"})
    assert events_only.get("/query/djt_event_count").status_code == 403
    assert events_only.get("/view/djt_fake_user_count").status_code == 403
    assert events_only.get("/schema").status_code == 403

    queries_only = as_token(web, new_token(store, "query:*", "view:*"))
    assert queries_only.post("/event", data=json.dumps({"auth_test": "refused"})).status_code == 403
    assert queries_only.get("/event", query_string={"msg": "{}"}).status_code == 403
    assert queries_only.get("/query/djt_event_count").status_code == 200


def test_with_auth_off_the_app_warns_loudly_and_allows_everything(
    insights: Insights, worker: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="web.auth"):
        open_app = create_app(insights).test_client()
    assert any(r.levelno == logging.WARNING and r.getMessage() == AUTH_OFF_WARNING for r in caplog.records)
    assert "INSIGHTS_AUTH=on" in AUTH_OFF_WARNING
    assert open_app.get("/query/djt_event_count").status_code == 200
    assert open_app.get("/query/djt_event_count", headers={"Authorization": "Bearer junk"}).status_code == 200
    assert open_app.get("/query/echo?access_token=x").get_json() == {"greeting": "hello", "params": {}}
    assert open_app.get("/").status_code == 200
    send(open_app, {"auth_test": "open"})


def test_only_digests_of_tokens_are_stored(secured: Insights, store: TokenStore) -> None:
    token = new_token(store, "schema", course="c1")
    redis = secured.services.redis
    key = hashlib.sha256(token.encode()).hexdigest()
    record = json.loads(redis.hget(secured.keys.tokens, key))
    assert record["policy"] == {"allow": ["schema"], "deny": [], "locked": {"course": "c1"}}
    assert redis.hget(secured.keys.token_names, record["name"]) == key.encode()
    stored = [k for k in redis.scan_iter() if token.encode() in k]
    for name in (secured.keys.tokens, secured.keys.token_names):
        if redis.type(name) == b"hash":
            stored += [b for pair in redis.hgetall(name).items() for b in pair if token.encode() in b]
    assert stored == []
    assert store.lookup(token) is not None and store.lookup(token + "x") is None


def test_policies_deny_wins_and_nothing_is_allowed_by_default() -> None:
    policy = Policy(allow=("query:*", "event"), deny=("query:djt_clear*",), locked={"user": "a"})
    assert policy.permits("query:djt_event_count") and policy.permits("event")
    assert not policy.permits("query:djt_clear_database")
    assert not policy.permits("view:djt_fake_user_count") and not policy.permits("schema")
    assert not Policy().permits("event")
    assert Policy.from_json(json.loads(json.dumps(policy.to_json()))) == policy


def test_a_policy_applies_its_locks_checking_every_channel() -> None:
    policy = Policy(locked={"user": "a"})
    assert policy.apply({"page": "1"}) == {"page": "1", "user": "a"}
    assert policy.apply({"user": "a"}, [[("user", "a")]], takes={"page"}) == {}
    with pytest.raises(LockedParameter) as refused:
        policy.apply({"user": "a"}, [[("user", "a")], [("user", "b")]])
    assert refused.value.parameter == "user"


@pytest.mark.slow  # eight command-line processes
def test_the_tokens_command_creates_lists_and_revokes(cli: CLI, web: FlaskClient) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = cli(
        "tokens", "create", name, "--allow", "query:djt_event_count", "schema",
        "--deny", "query:djt_clear*", "--lock", "course=c1",
    )  # fmt: skip
    token = created.stdout.strip()
    assert len(token) >= 43 and "\n" not in token
    assert "only this once" in created.stderr
    client = as_token(web, token)
    assert client.get("/query/djt_event_count").status_code == 200
    assert client.get("/query/djt_clear_database").status_code == 403

    listed = cli("tokens", "list").stdout
    line = next(line for line in listed.splitlines() if line.startswith(name + "\t"))
    assert "allow=query:djt_event_count,schema" in line and "deny=query:djt_clear*" in line
    assert "locked=course=c1" in line
    assert token not in listed

    assert "exists" in cli("tokens", "create", name, "--allow", "event", expect=2).stderr
    assert "matches no resource" in cli("tokens", "create", name + "-x", "--allow", "djt_event_count", expect=2).stderr
    assert "cannot be locked" in cli("tokens", "create", name + "-y", "--lock", "mongodb=x", expect=2).stderr
    cli("tokens", "revoke", name)
    assert client.get("/query/djt_event_count").status_code == 401
    assert "no token" in cli("tokens", "revoke", name, expect=1).stderr
    assert name not in cli("tokens", "list").stdout


@pytest.mark.slow  # a command-line process
def test_the_readmes_student_token_cannot_read_other_learners_raw_events(cli: CLI, web: FlaskClient) -> None:
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"tokens create ada (.+) --lock user=ada", readme)
    assert example, "the README's example student token is gone"
    name = f"readme-ada-{uuid.uuid4().hex[:8]}"
    secret = cli("tokens", "create", name, *shlex.split(example.group(1)), "--lock", "user=ada").stdout.strip()
    student = as_token(web, secret)
    assert student.get("/query/recent_events").status_code == 403
    assert student.get("/view/student_view?course=c1").status_code == 200


@pytest.mark.slow  # command-line processes
def test_the_tokens_command_accepts_every_resource_a_policy_can_name(cli: CLI) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    cli("tokens", "create", name, "--allow", "event", "schema", "health", "batches", "--deny", "file:*")
    assert "allow=event,schema,health,batches" in cli("tokens", "list").stdout
    cli("tokens", "revoke", name)
    usage = " ".join(cli("tokens", "create", "--help").stdout.split())  # unwrapped
    assert "event, schema, health, batches" in usage


@pytest.mark.parametrize("control", ["\r\n", "\n", "\r", "\t", "\x00", "\x1b", "\x7f"])
def test_a_control_character_in_the_login_target_is_400(web: FlaskClient, store: TokenStore, control: str) -> None:
    token = new_token(store, "schema")
    response = login(web, token, next=f"/query/x{control}Set-Cookie: a=b")
    assert response.status_code == 400 and "next must be a path" in error_of(response)
