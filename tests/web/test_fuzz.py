"""Hostile input: property-based fuzzing (hypothesis) of every HTTP endpoint and of event intake.

Malformed JSON, wrong types, huge and deeply nested payloads, invalid UTF-8, bad gzip, unknown
names, path traversal in file names and script in parameters. Whatever arrives: no 5xx, error
bodies are JSON objects naming the problem (an HTML page on dashboard pages) without a
traceback, no script comes back unescaped in a page, no file outside a store is served, the
worker survives, and every valid event of a request that also holds garbage is handled once.

Arbitrary *arguments* go only where they cannot reach module code that may legitimately choke
on them (a module error is a 500 by design, e.g. ``histogram(values="abc")``): to parameters a
function does not take (400), to functions that take anything (``echo``) or use strings safely.

Run with ``-s`` to see "fuzz cases tried: N" (also written to ``var/fuzz-cases.txt``).
"""

from __future__ import annotations

import gzip
import inspect
import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import ROOT
from tasks.app import Insights
from tasks.authoring.injection import INJECTED, caller_arguments, injected_names
from tasks.codec.json_shape import MAX_DEPTH
from tasks.core.memo import MODE_ARGUMENT
from tasks.core.policy import TOKEN_PARAM
from tests.conftest import Pipeline, wait_for, wait_handled
from tests.web.test_intake import SMALL_LIMIT, json_lines, post_chunked, small_limit  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow  # thousands of requests


def fuzz(examples: int) -> settings:
    """Hypothesis settings for a test that drives the real app: no deadline, no example database."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


CASES: Counter[str] = Counter()  # examples actually run, per test
HEALTH_PROBES: Counter[str] = Counter()


def tried(test: str) -> None:
    CASES[test] += 1


@pytest.fixture(scope="module", autouse=True)
def count_cases(processes_before: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """After the module: print and keep the number of cases tried (and note the live processes first)."""
    yield
    total = sum(CASES.values())
    lines = [f"fuzz cases tried: {total}", *(f"  {name}: {n}" for name, n in sorted(CASES.items()))]
    print("\n" + "\n".join(lines))
    (ROOT / "var").mkdir(exist_ok=True)
    (ROOT / "var" / "fuzz-cases.txt").write_text("\n".join(lines) + "\n")


# Strategies -------------------------------------------------------------------------------
SCRIPTS = [
    "<script>alert(1)</script>",
    "\"><script>alert('x')</script>",
    "'><img src=x onerror=alert(1)>",
    "<svg/onload=alert(1)>",
    "javascript:alert(1)",
    "</textarea><script>alert(1)</script>",
    '" onmouseover="alert(1)',
    "{{7*7}}{% raw %}",
    "<iframe src=//evil.example>",
]
HOSTILE = [
    "",
    ".",
    "..",
    "../..",
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "%2e%2e",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252f",
    "....//....//",
    "/etc/passwd",
    "\x00",
    "a\x00b",
    "name\x00.txt",
    "_private",
    "__init__",
    "djt_event_count\x00",
    "djt_event_count/..",
    "\u202eevil",
    "\ufeff",
    "é🙂\u0301",
    "${jndi:ldap://evil.example/a}",
    "%s%s%n",
    "con",
    "a" * 300,
    "x" * 5000,
    "?a=1#frag",
    "a;b,c&d=e",
    *SCRIPTS,
]

text = st.text(max_size=40)
hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    text,
    st.builds(lambda a, h, b: a + h + b, text, st.sampled_from(HOSTILE), text),
)
# A URL path segment: percent-encoded text (slashes too), or with '/', '%' and '.' raw, or raw bytes (invalid UTF-8).
segments = st.one_of(
    hostile_text.map(lambda s: quote(s, safe="")),
    hostile_text.map(lambda s: quote(s, safe="/%.")),
    st.binary(max_size=40).map(lambda b: quote(b, safe="")),
)
SURROGATES = ["\ud800", "a\udfffb", "\udc00\ud800", "\udbff"]  # lone surrogates: not valid Unicode text
json_scalars = st.one_of(
    st.sampled_from(SURROGATES),
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**300),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(
            st.one_of(text, st.sampled_from(["__type__", "__value__", "$where", "$gt"])), children, max_size=5
        ),
    ),
    max_leaves=25,
)


def nested(depth: int, kind: str) -> str:
    """JSON text nested ``depth`` levels deep."""
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


depths = st.one_of(st.integers(min_value=1, max_value=5000), st.sampled_from([100, 101, 500, 900, 980, 995, 1000]))
deep_json = st.builds(nested, depths, st.sampled_from(["list", "dict"]))
bodies = st.one_of(  # raw request bodies: anything at all
    st.binary(max_size=300),
    text.map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    deep_json.map(str.encode),
    st.sampled_from(
        [b"", b"{", b"[", b"null", b"NaN", b"Infinity", b"-1e999", b'"\\ud800"', b"\xff\xfe{}", b"\xef\xbb\xbf{}"]
    ),
    st.builds(lambda n: b'{"a": "' + b"x" * n + b'"}', st.integers(min_value=10**5, max_value=3 * 10**6)),
)


# Checks -----------------------------------------------------------------------------------
def check(response: Any, what: str = "") -> Any:
    """No 5xx; an error is a JSON object {"error", "status"} (or an HTML page); never a traceback."""
    status = response.status_code
    body = response.get_data()
    context = f"{what} -> {status} {body[:500]!r}"
    assert status < 500, context
    assert b"Traceback (most recent call last)" not in body, context
    if status >= 400:
        if response.mimetype == "application/json":
            error = response.get_json()
            assert isinstance(error, dict) and isinstance(error.get("error"), str), context
            assert error["status"] == status, context
        else:
            assert response.mimetype == "text/html", context
            assert f"<h2>{status}</h2>".encode() in body, context
    return response


# What only an injection can put into a page: the templates never contain these.
INJECTED_MARKUP = [
    "<script>alert",
    "<img src=x onerror",
    "<svg/onload",
    '" onmouseover="alert',
    "<iframe src=//evil",
    "</textarea><script>",
]


def assert_escaped(response: Any, what: str = "") -> None:
    """No script from the request comes back as markup in an HTML response."""
    if response.mimetype != "text/html":
        return
    page = response.get_data(as_text=True)
    for markup in INJECTED_MARKUP:
        assert markup not in page, f"{what}: {markup!r} came back unescaped"


def specs(insights: Insights, kind: str | None = None) -> list[Any]:
    kinds = (kind,) if kind else ("view", "query")
    return [spec for k in kinds for spec in insights.registry.specs(k) if not spec.name.startswith("_")]


def takes_anything(spec: Any) -> bool:
    """Whether a function accepts any argument (``params`` or ``**kwargs``)."""
    return "params" in injected_names(spec.func) or any(
        p.kind == p.VAR_KEYWORD for p in inspect.signature(spec.func).parameters.values()
    )


# Names ------------------------------------------------------------------------------------
@fuzz(500)
@given(
    kind=st.sampled_from(["view", "query", "run", "embed", "result", "receipt", "batch", "fs", "modules"]),
    name=segments,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
)
def test_unknown_and_hostile_names(client: FlaskClient, insights: Insights, kind: str, name: str, method: str) -> None:
    """Any name (encoded or raw, invalid UTF-8, traversal, NUL, huge) in every route with a name: a 4xx."""
    tried("names")
    path = {
        "run": f"/run/{'view' if len(name) % 2 else 'query'}/{name}",
        "embed": f"/embed/{'view' if len(name) % 2 else 'query'}/{name}",
        "fs": f"/fs/{name}/x.txt",
        "modules": f"/modules/{name}/static/hello.css",
    }.get(kind, f"/{kind}/{name}")
    response = check(client.open(path, method=method), f"{method} {path}")
    real = {n for spec in specs(insights) for n in spec.names} | set(insights.registry.modules)
    if not any(n == name for n in real):
        assert response.status_code in (400, 403, 404, 405, 308), path
    assert_escaped(response, path)


@fuzz(150)
@given(kind=st.sampled_from(["view", "query"]), name=hostile_text, args=st.dictionaries(text, hostile_text, max_size=3))
def test_unknown_names_in_every_channel(client: FlaskClient, kind: str, name: str, args: dict[str, str]) -> None:
    """Unknown and private names in run, embed and chain, with any arguments."""
    tried("unknown names, all channels")
    if name in {n for spec in specs(client.application.extensions["insights"]) for n in spec.names}:
        return
    check(client.post(f"/run/{kind}/{quote(name, safe='')}", json=args), "run")
    page = check(client.get(f"/embed/{kind}/{quote(name, safe='')}", query_string=args), "embed")
    assert_escaped(page, "embed")
    chained = check(client.post("/chain", json={"steps": [{kind: name, "args": args}]}), "chain")
    assert chained.status_code in (400, 403, 404)


# Arguments --------------------------------------------------------------------------------
@fuzz(400)
@given(data=st.data(), channel=st.sampled_from(["query", "form", "json", "run", "chain"]))
def test_unexpected_arguments_are_400(client: FlaskClient, insights: Insights, data: Any, channel: str) -> None:
    """A function called with a parameter it does not take answers 400, through every channel."""
    tried("unexpected arguments")
    spec = data.draw(st.sampled_from([s for s in specs(insights) if not takes_anything(s)]))
    known = {*caller_arguments(spec.func), *INJECTED, TOKEN_PARAM, MODE_ARGUMENT}
    keys = st.one_of(hostile_text, st.sampled_from(["colour", "COURSE", "user ", "__class__", "mongodb\x00"]))
    values = json_values if channel in ("json", "run", "chain") else hostile_text
    extra = data.draw(st.dictionaries(keys.filter(lambda k: k not in known), values, min_size=1, max_size=4))
    path = f"/{spec.kind}/{spec.name}"
    if channel == "query":
        response = client.get(path, query_string=extra)
    elif channel == "form":
        response = client.post(path, data=extra)
    elif channel == "json":
        response = client.post(path, json=extra)
    elif channel == "run":
        response = client.post(f"/run/{spec.kind}/{spec.name}", json=extra)
    else:
        response = client.post("/chain", json={"steps": [{spec.kind: spec.name, "args": extra}]})
    check(response, f"{channel} {path} {extra!r}")
    assert response.status_code == 400, (path, extra, response.get_json())
    assert "argument" in response.get_json()["error"]


@fuzz(300)
@given(
    body=bodies,
    content_type=st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin-1",
        ]
    ),
    target=st.sampled_from(
        [
            "/query/djt_event_count",
            "/view/djt_fake_user_count",
            "/query/djt_user_event_count",
            "/run/query/djt_event_count",
            "/query/square",
            "/chain",
        ]
    ),
)
def test_any_body(client: FlaskClient, body: bytes, content_type: str, target: str) -> None:
    """Bodies of any shape and encoding to views, queries, runs and chains: 2xx or a clear 4xx."""
    tried("request bodies")
    response = check(client.post(target, data=body, content_type=content_type), f"{target} {body[:200]!r}")
    assert response.status_code in (200, 202, 400, 413), response.get_data()[:300]


def refusals(args: dict[str, Any]) -> list[str]:
    """The reasons tasks/core/checks.py may give for refusing ``echo(greeting, **params)`` arguments."""
    reasons = []
    if holds_operator(args):
        reasons.append("operator keys")
    if holds_surrogate(args):
        reasons.append("not valid Unicode")
    if isinstance(args.get("greeting"), dict):
        reasons.append("is an object")
    if "greeting" in args and not isinstance(args["greeting"], str):  # typed by its default, "hello"
        reasons.append("expected str")
    return reasons


def holds_surrogate(value: Any) -> bool:
    """Whether a JSON value holds a lone surrogate in a string or key (at any depth)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def holds_operator(value: Any) -> bool:
    """Whether a JSON value holds an object with a key starting with "$" (at any depth)."""
    if isinstance(value, dict):
        return any(str(k).startswith("$") or holds_operator(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_operator(v) for v in value)
    return False


@fuzz(120)
@given(
    args=st.dictionaries(
        st.one_of(text, st.just("greeting")).filter(lambda k: k not in INJECTED and k != TOKEN_PARAM),
        json_values,
        max_size=6,
    ),
    depth=st.one_of(st.just(0), st.integers(min_value=1, max_value=120)),
    started=st.booleans(),
)
def test_any_json_arguments_round_trip(client: FlaskClient, args: dict[str, Any], depth: int, started: bool) -> None:
    """``echo(greeting="hello", **params)`` gets every JSON value exactly as sent in ``params``, and
    any text as ``greeting`` (typed by its default), whether awaited (``/query``) or started and
    polled (``/run``, ``/result``)."""
    tried("echo round trip")
    if depth:
        args = {**args, "deep": json.loads(nested(depth, "list" if depth % 2 else "dict"))}
    path = "/run/query/echo" if started else "/query/echo"
    response = check(client.post(path, json=args), f"{path} {args!r}"[:300])
    if depth + 1 > MAX_DEPTH:  # the body object holds it: one level more
        assert response.status_code == 400 and "nested" in response.get_json()["error"]
        return
    reasons = refusals(args)
    if reasons:  # refused by tasks/core/checks.py: operator keys, bad text, an object for a plain parameter
        assert response.status_code == 400 and any(r in response.get_json()["error"] for r in reasons)
        return
    rest = {k: v for k, v in args.items() if k != "greeting"}
    expected = {"greeting": args.get("greeting", "hello"), "params": rest}
    if not started:
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == expected
        return
    assert response.status_code == 202, response.get_json()
    poll = response.get_json()["result"]
    outcome = wait_for(lambda: (r := check(client.get(poll)).get_json())["state"] in ("done", "failed") and r)
    assert outcome == {"kind": "query", "name": "echo", "state": "done", "result": expected}
    assert check(client.get(poll)).status_code == 404  # delivered once


@fuzz(100)
@given(who=hostile_text, course=hostile_text, key=hostile_text, user=hostile_text)
def test_string_arguments_used_safely(client: FlaskClient, who: str, course: str, key: str, user: str) -> None:
    """Functions whose string arguments are used safely answer 200 (and escape them) for any string."""
    tried("safe string arguments")
    page = check(client.get("/view/djt_hello_template", query_string={"who": who}), "hello")
    assert page.status_code == 200
    assert_escaped(page, "djt_hello_template")
    for path, args in (
        ("/query/djt_user_event_count", {"user": user}),
        ("/query/djt_cache_get", {"key": key}),
        ("/query/grades_array", {"course": course}),
    ):
        response = check(client.post(path, data=args), path)
        assert response.status_code == 200, (path, args, response.get_json())


@fuzz(150)
@given(
    filename=st.one_of(
        hostile_text, st.builds(lambda p, t: p + t, st.sampled_from(["../", "..\\", "/", "a/../", ""]), hostile_text)
    )
)
def test_file_name_arguments(client: FlaskClient, filename: str) -> None:
    """File names given to a module's fs (read, url) are checked: a clear 400, never a 500."""
    tried("file name arguments")
    for path in ("/query/djt_readfile", "/query/djt_file_url"):
        response = check(client.get(path, query_string={"filename": filename}), f"{path} {filename!r}")
        assert response.status_code in (200, 400), response.get_json()


# Chains -----------------------------------------------------------------------------------
CHEAP = ["djt_event_count", "djt_fake_user_count", "djt_three_name", "echo", "grades_series", "moment", "_secret"]
step_names = st.one_of(st.sampled_from(CHEAP), hostile_text)
step = st.one_of(
    st.builds(lambda kind, name: {kind: name}, st.sampled_from(["query", "view"]), step_names),
    st.builds(
        lambda kind, name, args, into: {kind: name, "args": args, "into": into},
        st.sampled_from(["query", "view"]),
        step_names,
        st.one_of(st.dictionaries(text, json_values, max_size=2), json_values),
        st.one_of(st.none(), hostile_text, json_values),
    ),
    st.builds(
        lambda members: {"group": members},
        st.one_of(st.lists(st.builds(lambda n: {"query": n}, step_names), max_size=3), json_values),
    ),
    json_values,
)


@fuzz(200)
@given(
    body=st.one_of(st.builds(lambda s: {"steps": s}, st.one_of(st.lists(step, max_size=4), json_values)), json_values)
)
def test_chain_bodies(client: FlaskClient, body: Any) -> None:
    """Any composition: a result (200) or a 400 naming the step; private and unknown names refused."""
    tried("chains")
    response = check(client.post("/chain", json=body), f"chain {body!r}"[:500])
    assert response.status_code in (200, 400, 403, 404), response.get_data()[:300]


@fuzz(150)
@given(value=json_values)
def test_a_fed_value_passes_the_same_checks_as_a_sent_one(client: FlaskClient, value: Any) -> None:
    """Whatever a step returns (here: any JSON, surrogates and operator keys included) is fed on
    only if the same value would be accepted from a caller; else the chain is a 400 naming the step."""
    tried("chain feeding")
    sent = check(client.post("/query/echo_any", json={"value": value}), f"sent {value!r}"[:300])
    steps = [{"query": "from_json", "args": {"text": json.dumps(value)}}, {"query": "echo_any", "into": "value"}]
    fed = check(client.post("/chain", json={"steps": steps}), f"fed {value!r}"[:300])
    assert fed.status_code == sent.status_code, (fed.get_json(), sent.get_json())
    if fed.status_code == 200:
        assert fed.get_json() == sent.get_json()
    else:
        assert fed.get_json()["error"].startswith("step 2 (query 'echo_any'): ")


# Event intake -----------------------------------------------------------------------------
@fuzz(400)
@given(
    body=bodies,
    encoding=st.sampled_from(["", "identity", "gzip", "gzip-raw", "x-gzip", "deflate", "br", "GZIP"]),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "application/x-ndjson", "application/x-www-form-urlencoded"]
    ),
)
def test_intake_any_body(client: FlaskClient, body: bytes, encoding: str, content_type: str) -> None:
    """POST /event with anything at all: 202, or a 4xx that says why; gzip bodies checked."""
    tried("intake bodies")
    headers = {}
    if encoding == "gzip":
        body, headers = gzipped(body), {"Content-Encoding": "gzip"}
    elif encoding == "gzip-raw":  # claims gzip, is not
        headers = {"Content-Encoding": "gzip"}
    elif encoding:
        headers = {"Content-Encoding": encoding}
    response = check(client.post("/event", data=body, headers=headers, content_type=content_type), repr(body[:200]))
    assert response.status_code in (202, 400, 413, 415), response.get_data()[:300]
    if response.status_code == 202:
        result = response.get_json()
        assert result["accepted"] >= 1 and isinstance(result["rejected"], list)


@fuzz(150)
@given(
    msg=st.one_of(hostile_text, bodies.map(lambda b: b.decode("utf-8", "replace")).filter(lambda s: len(s) < 5000)),
    method=st.sampled_from(["GET", "POST"]),
    extra=st.dictionaries(text, hostile_text, max_size=3),
)
def test_intake_msg_records(client: FlaskClient, msg: str, method: str, extra: dict[str, str]) -> None:
    """HTTPHandler records (``msg`` in a query string or form) with anything in them."""
    tried("intake msg records")
    fields = {**extra, "msg": msg}
    response = client.get("/event", query_string=fields) if method == "GET" else client.post("/event", data=fields)
    check(response, repr(msg[:200]))
    assert response.status_code in (202, 400, 413), response.get_data()[:300]


invalid_items = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(json_scalars, max_size=3),
    st.lists(st.lists(st.integers(), max_size=2), max_size=2),
    text.map(lambda s: "not json: " + s),
    st.sampled_from(["[1, 2]", "null", "42", '"a string"', "{", "{'single': 'quotes'}", "\x00", ""]),
    st.integers(min_value=MAX_DEPTH + 1, max_value=600).map(lambda d: json.loads(nested(d, "dict"))),  # too deep
)


@fuzz(36)
@given(
    items=st.lists(
        st.one_of(
            st.tuples(st.just("valid"), st.sampled_from(["object", "string"]), json_values),
            st.tuples(st.just("invalid"), st.just(""), invalid_items),
        ),
        min_size=1,
        max_size=12,
    ),
    framing=st.sampled_from(["json", "gzip", "lines", "msg"]),
)
def test_valid_part_of_a_mixed_request_is_handled_once(
    client: FlaskClient, items: list[tuple[str, str, Any]], framing: str
) -> None:
    """Valid events mixed with garbage: exactly the garbage is refused by index, every valid
    event is handled exactly once (pipeline module ``delivered``), none is lost."""
    tried("mixed intake, handled")
    run = uuid.uuid4().hex
    sent, expected, invalid = [], {}, []
    for index, (kind, form, value) in enumerate(items):
        if kind == "invalid":
            sent.append(value)
            invalid.append(index)
            continue
        event = {"run": run, "id": f"{run}-{index}", "event_type": "fuzz", "payload": value}
        sent.append(event if form == "object" else json.dumps(event))
        if holds_surrogate(value):  # not valid text: refused by index like garbage
            invalid.append(index)
        else:
            expected[event["id"]] = 1
    if framing == "lines":
        body = "\n".join(json.dumps(item) for item in sent).encode()
        response = client.post("/event", data=body)
    elif framing == "gzip":
        response = client.post("/event", data=gzipped(json.dumps(sent).encode()), headers={"Content-Encoding": "gzip"})
    elif framing == "msg":
        response = client.post("/event", data={"msg": json.dumps(sent)})
    else:
        response = client.post("/event", data=json.dumps(sent), content_type="application/json")
    check(response, f"{framing} {sent!r}"[:500])
    if not expected:
        assert response.status_code == 400
        return
    assert response.status_code == 202, response.get_json()
    result = response.get_json()
    assert result["accepted"] == len(expected)
    assert [r["index"] for r in result["rejected"]] == invalid
    wait_handled(client, result["receipt"])
    delivered = check(client.get("/query/delivered", query_string={"run": run})).get_json()
    assert delivered == expected


# Script in parameters ---------------------------------------------------------------------
script_text = st.one_of(
    st.sampled_from(SCRIPTS), st.builds(lambda a, s, b: a + s + b, text, st.sampled_from(SCRIPTS), text)
)


@fuzz(200)
@given(
    data=st.data(),
    args=st.dictionaries(
        st.one_of(st.sampled_from(["course", "user", "who", "autorun", "f", "module", "next", "title"]), script_text),
        script_text,
        min_size=1,
        max_size=4,
    ),
)
def test_script_in_parameters_is_escaped(
    client: FlaskClient, insights: Insights, data: Any, args: dict[str, str]
) -> None:
    """Script in names and arguments never comes back unescaped in an HTML page."""
    tried("script in parameters")
    args = {**args, **({"autorun": "1"} if data.draw(st.booleans()) else {})}
    spec = data.draw(st.sampled_from(specs(insights)))
    name = data.draw(st.sampled_from(SCRIPTS))
    for path in (
        "/",
        f"/embed/{spec.kind}/{spec.name}",
        f"/embed/view/{quote(name, safe='')}",
        f"/embed/query/{quote(name, safe='')}",
        "/schema",
        "/reports",
        f"/view/{quote(name, safe='')}",
    ):
        query = {**args, "f": "html"} if path == "/schema" else args
        response = check(client.get(path, query_string=query), path)
        assert_escaped(response, path)
    csp = client.get("/", query_string=args).headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp


# Path traversal ---------------------------------------------------------------------------
UP = ["..", "%2e%2e", "%2E%2e", ".%2e", "%252e%252e", "..%00", "..\\..", "%2e%2e%5c", "....", ".", "", "%2f"]
STATIC_CSS = ROOT / "modules" / "testmodule" / "static" / "hello.css"
SEP = ["/", "%2f", "%2F", "\\", "%5c", "//", "/./"]


@pytest.fixture
def planted(insights: Insights) -> dict[str, Path]:
    """Files outside a module's store (and a module's static folder) that must never be served."""
    marker = f"PLANTED-{uuid.uuid4().hex}"
    fs_root = insights.settings.fs_root
    fs_root.mkdir(parents=True, exist_ok=True)
    files = {
        "data": insights.settings.data_dir / "planted.txt",  # two levels above a store's files
        "fs_root": fs_root / "planted.txt",  # next to the module stores
        "other": fs_root / "otherstore" / "planted.txt",  # another store's folder
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(marker)
    inside = insights.services.fs("testmodule")
    with inside.open("fuzz/inside.txt", "w") as f:
        f.write("inside the store")
    files["marker"] = Path(marker)
    return files


@fuzz(400)
@given(
    ups=st.lists(st.sampled_from(UP), min_size=0, max_size=6),
    seps=st.lists(st.sampled_from(SEP), min_size=6, max_size=6),
    target=st.sampled_from(
        [
            "planted.txt",
            "otherstore/planted.txt",
            "files/planted.txt",
            "testmodule/../planted.txt",
            "__init__.py",
            "testmodule/__init__.py",
            "static/hello.css",
            "fuzz/inside.txt",
            "etc/passwd",
            "proc/self/environ",
        ]
    ),
    prefix=st.sampled_from(["", "fuzz/", "/", "%2f", "fuzz/../", "static/", "./"]),
    route=st.sampled_from(["fs", "static"]),
)
def test_path_traversal_never_leaves_the_store(
    client: FlaskClient, planted: dict[str, Path], ups: list[str], seps: list[str], target: str, prefix: str, route: str
) -> None:
    tried("path traversal")
    climb = "".join(up + sep for up, sep in zip(ups, seps, strict=False))
    filename = prefix + climb + target
    base = "/fs/testmodule/" if route == "fs" else "/modules/testmodule/static/"
    response = check(client.get(base + filename), base + filename)
    body = response.get_data()
    assert str(planted["marker"]).encode() not in body, filename
    assert b"from tasks import" not in body, filename  # module source next to static/
    assert b"root:" not in body and b"PATH=" not in body, filename
    if response.status_code == 200:  # only ever the file inside the store / static folder
        inside = b"inside the store" if route == "fs" else STATIC_CSS.read_bytes()
        assert body == inside, filename
    else:
        assert response.status_code in (308, 400, 404), filename


@fuzz(150)
@given(
    filename=st.one_of(
        hostile_text, st.binary(max_size=60).map(lambda b: quote(b, safe="/")), st.text(min_size=200, max_size=600)
    )
)
def test_any_file_name(client: FlaskClient, filename: str) -> None:
    """Any file name (long, NUL, invalid UTF-8, unicode) in /fs and module static: 4xx, never 5xx."""
    tried("file names")
    for base in ("/fs/testmodule/", "/modules/testmodule/static/", "/fs/nomodule/", "/modules/nomodule/static/"):
        name = filename if "%" in filename else quote(filename, safe="/")
        response = check(client.get(base + name), base + name)
        assert response.status_code in (200, 308, 400, 404), (base, name, response.status_code)


# Other endpoints --------------------------------------------------------------------------
ENDPOINTS = [
    "/",
    "/schema",
    "/event_properties",
    "/reports",
    "/login",
    "/logout",
    "/health",
    "/event",
    "/receipt/x",
    "/batch/x",
    "/result/x",
]
query_strings = st.one_of(
    st.dictionaries(
        st.one_of(hostile_text, st.sampled_from(["f", "module", "next", TOKEN_PARAM, "msg", "autorun"])),
        st.one_of(hostile_text, st.sampled_from(["html", "json", "1", "true", "//evil.example", "/\\evil"])),
        max_size=4,
    ),
    st.binary(max_size=80).map(lambda b: quote(b, safe="=&%+")),  # raw, possibly broken, query strings
)


@fuzz(400)
@given(
    path=st.sampled_from(ENDPOINTS),
    query=query_strings,
    method=st.sampled_from(["GET", "GET", "POST", "HEAD", "OPTIONS"]),
    body=st.one_of(st.just(b""), bodies),
)
def test_every_endpoint_with_any_query_string(
    client: FlaskClient, path: str, query: Any, method: str, body: bytes
) -> None:
    """Every other endpoint with any query string, method and body: no 5xx, no open redirect."""
    tried("endpoints x query strings")
    if path == "/health" and HEALTH_PROBES["n"] >= 20:  # probes the broker and MongoDB: keep it cheap
        path = "/event_properties"
    HEALTH_PROBES["n"] += path == "/health"
    response = client.open(path, method=method, query_string=query, data=body or None)
    if method == "HEAD":  # no body to check
        assert response.status_code < 500 and not response.get_data()
        return
    check(response, f"{method} {path}?{query!r}")
    if path == "/login":
        assert "Set-Cookie" not in response.headers  # a GET never logs in; no fuzzed input holds a valid token
    if response.status_code in (301, 302, 303, 307, 308):
        location = response.headers["Location"]
        assert location.startswith("/") and not location.startswith("//"), location


@fuzz(60)
@given(
    body=st.one_of(bodies, st.integers(min_value=1, max_value=3 * SMALL_LIMIT).map(lambda n: json_lines("fuzz", n))),
    chunk=st.integers(min_value=1, max_value=100_000),
    compress=st.booleans(),
)
def test_chunked_bodies_are_held_to_the_limit(
    request: pytest.FixtureRequest, body: bytes, chunk: int, compress: bool
) -> None:
    """Any body sent chunked (no Content-Length), in chunks of any size, plain or gzip: 202 only
    when the (decoded) body is within the limit, else 413 — never a silent cut."""
    tried("chunked bodies")
    url = request.getfixturevalue("small_limit")  # a web app with a 64 KiB limit, over real HTTP
    sent, headers = (gzipped(body), {"Content-Encoding": "gzip"}) if compress else (body, {})
    status, answer = post_chunked(f"{url}/event", sent, headers, chunk=min(chunk, max(1, len(sent))))
    assert status in (202, 400, 413), answer
    assert isinstance(answer, dict)
    if len(body) > SMALL_LIMIT or len(sent) > SMALL_LIMIT:
        assert status == 413, (len(body), len(sent), answer)
    elif status == 202:
        assert answer["accepted"] >= 1


def test_oversized_and_bomb_bodies_are_413(client: FlaskClient, insights: Insights) -> None:
    """Bodies over the limit, plain or as a gzip bomb, are refused with 413 everywhere."""
    limit = insights.settings.max_request_bytes
    big = b'{"a": "' + b"x" * limit + b'"}'
    for path in ("/event", "/query/echo", "/view/djt_fake_user_count", "/chain", "/run/query/echo"):
        tried("oversized")
        response = check(client.post(path, data=big, content_type="application/json"), path)
        assert response.status_code == 413
    bomb = gzipped(b"[" + b" " * (limit + 10) + b"]")
    tried("oversized")
    response = check(client.post("/event", data=bomb, headers={"Content-Encoding": "gzip"}), "bomb")
    assert response.status_code == 413


# Afterwards -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def processes_before(worker: Pipeline) -> list[subprocess.Popen[bytes]]:
    """The pipeline processes alive when this module starts (earlier tests may have killed some on purpose)."""
    return [p for p in [*worker.workers, worker.batcher] if p is not None and p.poll() is None]


def test_worker_and_pipeline_survived(
    client: FlaskClient, insights: Insights, processes_before: list[subprocess.Popen[bytes]]
) -> None:
    """After all of the above every worker and the batcher still run and answer."""
    tried("survival")
    dead = [process.args for process in processes_before if process.poll() is not None]
    assert not dead, f"died during the fuzz: {dead}"
    workers = len(processes_before) - 1  # all but the batcher
    wait_for(lambda: len(insights.celery.control.ping(timeout=0.5)) >= workers, what="the workers to answer")
    assert check(client.get("/query/djt_fake_user_count")).get_json() == 2
    assert check(client.get("/health")).get_json()["status"] == "ok"
