"""The problems module end to end: attempts, students, first-try correctness, score distributions."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from flask.testing import FlaskClient

from tasks.app import Insights
from tests.modules.test_eventlog import FORMATS, assert_figure_view, dataset, facts, get_query


def submissions(data: Any) -> pd.DataFrame:
    """The raw graded submissions of a dataset."""
    frame = facts(data)
    return frame[frame["verb"] == "answered"]


def expected_stats(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per problem, from the raw submissions (every generated one has success and an attempt number)."""
    stats = {}
    for problem, subs in frame.groupby("object"):
        students = sorted(set(subs["agent"]))
        first = {s: bool(subs[(subs["agent"] == s) & (subs["attempt"] == 1)]["success"].iloc[0]) for s in students}
        best = subs.groupby("agent")["score"].max()
        stats[problem] = {
            "attempts": len(subs),
            "students": len(students),
            "first_try_correct": sum(first.values()) / len(students),
            "solved": sum(bool(subs[subs["agent"] == s]["success"].any()) for s in students) / len(students),
            "mean_best_score": best.mean(),
            "max_score": subs["max_score"].max(),
            "distribution": best.value_counts().sort_index().to_dict(),
        }
    return stats


@pytest.mark.parametrize("fmt", FORMATS)
def test_problem_stats_match_the_raw_events(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    expected = expected_stats(submissions(data))
    rows = get_query(client, "problem_stats", course=data.course)
    assert [row["problem"] for row in rows] == sorted(expected) and len(expected) >= 3
    for row in rows:
        want = expected[row["problem"]]
        assert (row["attempts"], row["students"]) == (want["attempts"], want["students"])
        for name in ("first_try_correct", "solved", "mean_best_score", "max_score"):
            assert row[name] == pytest.approx(want[name]), (row["problem"], name)
    assert sum(row["attempts"] for row in rows) > sum(row["students"] for row in rows)  # some retried


@pytest.mark.parametrize("fmt", FORMATS)
def test_score_distributions_match_the_raw_events(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    for problem, want in expected_stats(submissions(data)).items():
        rows = get_query(client, "score_distribution", course=data.course, problem=problem)
        assert {row["score"]: row["students"] for row in rows} == want["distribution"]
    assert get_query(client, "score_distribution", course=data.course, problem="no-such-problem") == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_problems_of_a_student_match_the_raw_events(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    frame = submissions(data)
    for user, subs in frame.groupby("agent"):
        answer = get_query(client, "student_problems", user=user, course=data.course)
        solved = subs.groupby("object")["success"].any()
        assert answer == {"problems_attempted": subs["object"].nunique(), "problems_solved": int(solved.sum())}


@pytest.mark.parametrize("fmt", FORMATS)
def test_problems_plot_is_a_figure(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    assert_figure_view(client, "problems", "problems_plot", course=data.course)


def test_problems_plot_of_a_course_without_submissions_is_still_a_figure(client: FlaskClient) -> None:
    assert_figure_view(client, "problems", "problems_plot", course="course-v1:Nobody+None+Never")
    assert get_query(client, "problem_stats", course="course-v1:Nobody+None+Never") == []
