"""The grades module end to end: grades from best problem scores, their histogram, a chain into histogram."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from flask.testing import FlaskClient

from tasks.app import Insights
from tests.modules.test_eventlog import FORMATS, assert_figure_view, dataset, facts, get_query


def expected_grades(frame: pd.DataFrame) -> dict[str, float]:
    """Percent grades from the raw submissions: sum of best scores over the sum of every problem's max score."""
    subs = frame[frame["verb"] == "answered"]
    possible = subs.groupby("object")["max_score"].max().sum()
    best = subs.groupby(["agent", "object"])["score"].max()
    return {student: 100 * score / possible for student, score in best.groupby("agent").sum().items()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_grades_match_the_raw_events(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    expected = expected_grades(facts(data))
    grades = get_query(client, "get_grades", course=data.course, _memo="refresh")
    assert sorted(grades) == sorted(expected) and len(expected) >= 6
    assert grades == pytest.approx(expected)
    assert all(0 <= grade <= 100 for grade in grades.values())
    assert get_query(client, "get_grades", course=data.course, _memo="cached") == grades  # memoized


def test_grades_of_a_course_without_submissions_are_empty(client: FlaskClient) -> None:
    assert get_query(client, "get_grades", course="course-v1:Nobody+None+Never") == {}


@pytest.mark.parametrize("fmt", FORMATS)
def test_plot_grades_is_a_figure_of_the_grades_module(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    assert_figure_view(client, "grades", "plot_grades", course=data.course)


def test_plot_grades_without_grades_is_still_a_figure(client: FlaskClient) -> None:
    assert_figure_view(client, "grades", "plot_grades", course="demo-101")


@pytest.mark.parametrize("fmt", FORMATS)
def test_grades_feed_the_histogram_view_in_a_chain(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    steps = [{"query": "get_grades", "args": {"course": data.course}}, {"view": "histogram", "into": "values"}]
    response = client.post("/chain", json={"steps": steps})
    assert response.status_code == 200, response.get_json()
    match = re.fullmatch(r'<img src="(/fs/grades/views/histogram-[0-9a-f]+\.png)" alt="histogram">', response.text)
    assert match and client.get(match.group(1)).mimetype == "image/png"
