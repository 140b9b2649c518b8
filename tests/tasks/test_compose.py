"""Compositions: each step's result feeds the next, worker to worker; failures name their step."""

from __future__ import annotations

import re

import numpy as np
from flask.testing import FlaskClient

from tasks.app import Insights
from tasks.compose import Step, compose, parse_steps
from tests.conftest import Pipeline

GRADES = {"query": "get_grades", "args": {"course": "chain-101"}}


def test_a_query_feeds_a_view_over_http(client: FlaskClient) -> None:
    response = client.post("/chain", json={"steps": [GRADES, {"view": "histogram", "args": {"title": "Grades"}}]})
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "text/html"
    match = re.fullmatch(r'<img src="(/fs/grades/views/histogram-[0-9a-f]+\.png)" alt="histogram">', response.text)
    assert match and client.get(match.group(1)).mimetype == "image/png"


def test_results_pass_between_steps_with_their_types(insights: Insights, worker: Pipeline) -> None:
    canvas = compose(insights, [Step("query", "grades_array", {"course": "ab"}), Step("query", "total", into="values")])
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
