"""Compositions: each step's result feeds the next, worker to worker; failures name their step."""

from __future__ import annotations

import re
import uuid

import numpy as np
import pytest
from flask.testing import FlaskClient

from config.settings import Settings
from tasks.app import Insights
from tasks.core.compose import Step, parse_steps
from tasks.core.tokens import TokenStore
from tasks.errors import ArgumentError
from tests.conftest import Pipeline, as_token, new_token, send

GRADES = {"query": "get_grades", "args": {"course": "chain-101"}}


def test_a_query_feeds_a_view_over_http(client: FlaskClient) -> None:
    response = client.post("/chain", json={"steps": [GRADES, {"view": "histogram", "args": {"title": "Grades"}}]})
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "text/html"
    match = re.fullmatch(r'<img src="(/fs/grades/views/histogram-[0-9a-f]+\.png)" alt="histogram">', response.text)
    assert match and client.get(match.group(1)).mimetype == "image/png"


def test_results_pass_between_steps_with_their_types(insights: Insights, worker: Pipeline) -> None:
    canvas = insights.compose([Step("query", "grades_array", {"course": "ab"}), Step("query", "total", into="values")])
    result = canvas.apply_async()
    try:
        assert result.get(timeout=20) == float((np.arange(6) + 2).sum())
    finally:
        result.forget()


def test_a_group_feeds_the_list_of_its_results_on(client: FlaskClient) -> None:
    steps = [
        {"group": [{"query": "grades_array", "args": {"course": c}} for c in ("a", "bb", "ccc")]},
        {"query": "total"},
    ]
    response = client.post("/chain", json={"steps": steps})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == float(sum((np.arange(6) + n).sum() for n in (1, 2, 3)))


def test_a_failing_step_is_named(client: FlaskClient) -> None:
    steps = [{"query": "grades_array", "args": {"course": "x"}}, {"query": "explode"}, {"view": "histogram"}]
    response = client.post("/chain", json={"steps": steps})
    assert response.status_code == 500
    assert response.get_json()["error"] == "step 2 (query 'explode') failed: RuntimeError: cannot use ndarray"


def test_steps_are_checked_before_anything_runs(client: FlaskClient) -> None:
    cases = {
        "step 2: no query named 'nope'": [GRADES, {"query": "nope"}],
        "step 1: query 'get_grades' is missing argument 'course'": [{"query": "get_grades"}],
        "step 2 (view 'djt_fake_user_count') has no parameter left": [GRADES, {"view": "djt_fake_user_count"}],
        "step 2: view 'histogram' got an unexpected argument 'colour'": [
            GRADES,
            {"view": "histogram", "args": {"colour": "red"}},
        ],
        "'steps' must be a non-empty list": [],
        'step 1: a step is {"query": name}': [{"handler": "x"}],
    }
    for message, steps in cases.items():
        response = client.post("/chain", json={"steps": steps})
        assert response.status_code == 400, (message, response.get_json())
        assert message in response.get_json()["error"]
    assert client.post("/chain", data="nope").status_code == 400


def test_steps_parse_from_json() -> None:
    stages = parse_steps([GRADES, {"group": [{"view": "histogram", "into": "values"}]}])
    assert stages == [Step("query", "get_grades", {"course": "chain-101"}), [Step("view", "histogram", {}, "values")]]


def plant(client: FlaskClient, key: str, value: object) -> None:
    """Have the test module's cache hold ``value`` under ``key`` (as any event sender can)."""
    send(client, {"event": "cachetest", "key": key, "value": value, "timeout": 300})


def test_a_fed_value_cannot_replace_a_locked_parameter(
    client: FlaskClient, web: FlaskClient, store: TokenStore
) -> None:
    tag = uuid.uuid4().hex
    bob, key = f"bob-{tag}", f"fed-user-{tag}"
    send(client, [{"user": bob}, {"user": bob}])
    plant(client, key, bob)
    ada = as_token(web, new_token(store, "query:*", user=f"ada-{tag}"))
    for into in ({"into": "user"}, {}):
        steps = [{"query": "djt_cache_get", "args": {"key": key}}, {"query": "djt_user_event_count", **into}]
        response = ada.post("/chain", json={"steps": steps})
        assert response.status_code in (400, 403), response.get_json()  # never bob's count
        assert response.get_json()["error"].startswith("step 2 (query 'djt_user_event_count')")  # refused, not run


def test_a_chain_step_cannot_call_a_denied_query_by_its_alias(web: FlaskClient, store: TokenStore) -> None:
    reader = as_token(web, new_token(store, "query:*", deny=("query:djt_three_name",)))
    assert reader.get("/query/edx_djt_three_name").status_code == 403  # the direct route holds
    for alias in ("edx_djt_three_name", "edx.djt_three_name"):
        for steps in ([{"query": alias}], [{"query": "djt_event_count"}, {"group": [{"query": alias}]}]):
            response = reader.post("/chain", json={"steps": steps})
            assert response.status_code == 403, f"{alias}: {response.status_code} {response.get_data(as_text=True)!r}"
            assert response.get_json()["resource"] == f"query:{alias}"
    assert reader.post("/chain", json={"steps": [{"query": "djt_event_count"}]}).status_code == 200


def test_a_chain_step_cannot_call_a_private_name(client: FlaskClient) -> None:
    response = client.post("/chain", json={"steps": [{"query": "djt_event_count"}, {"query": "_secret"}]})
    assert response.status_code == 403 and "private" in response.get_json()["error"]  # as /query/_secret


def test_a_fed_value_holding_operator_keys_is_refused(client: FlaskClient) -> None:
    key = f"fed-operator-{uuid.uuid4().hex}"
    plant(client, key, {"$ne": "ada"})
    steps = [{"query": "djt_cache_get", "args": {"key": key}}, {"query": "djt_user_event_count"}]
    response = client.post("/chain", json={"steps": steps})
    assert response.status_code == 400
    assert "step 2 (query 'djt_user_event_count')" in response.get_json()["error"]
    assert "operator keys are not accepted" in response.get_json()["error"]


def test_into_cannot_name_a_parameter_the_step_sets(insights: Insights) -> None:
    with pytest.raises(ArgumentError, match="'into' names 'course', which the step already sets"):
        insights.compose(
            [
                Step("query", "grades_array", {"course": "a"}),
                Step("query", "grades_array", {"course": "b"}, into="course"),
            ],
        )


def test_chains_and_groups_are_bounded_before_anything_runs(client: FlaskClient, settings: Settings) -> None:
    long_chain = [{"query": "grades_array", "args": {"course": "x"}}] * 1000
    response = client.post("/chain", json={"steps": long_chain})
    assert response.status_code == 400
    assert f"at most {settings.max_chain_steps} steps" in response.get_json()["error"]
    wide = [{"group": [{"query": "grades_array", "args": {"course": "x"}}] * (settings.max_group_width + 1)}]
    response = client.post("/chain", json={"steps": wide})
    assert response.status_code == 400
    assert f"a group has at most {settings.max_group_width} steps" in response.get_json()["error"]
