"""The students module end to end: one student's summary, and its HTML table (autoescaped)."""

from __future__ import annotations

import html

import pandas as pd
import pytest
from flask.testing import FlaskClient

from tasks.app import Insights
from tests.modules.test_eventlog import FORMATS, dataset, facts, get_query
from tests.modules.test_grades import expected_grades
from tests.modules.test_video import watched_seconds


def expected_summary(frame: pd.DataFrame, user: str) -> dict[str, object]:
    """One student's summary from the raw events."""
    mine = frame[frame["agent"] == user].sort_values("timestamp")
    videos = mine[mine["verb"].isin(["loaded", "played", "paused", "seeked", "stopped"])]
    subs = mine[mine["verb"] == "answered"]
    return {
        "events": len(mine),
        "active_days": mine["timestamp"].dt.date.nunique(),
        "videos_watched": videos.loc[videos["verb"] == "played", "object"].nunique(),
        "watched_minutes": sum(watched_seconds(events) for _, events in videos.groupby("object")) / 60,
        "problems_attempted": subs["object"].nunique(),
        "problems_solved": int(subs.groupby("object")["success"].any().sum()),
        "grade": expected_grades(frame).get(user),
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_student_summaries_match_the_raw_events(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    frame = facts(data)
    graded = 0
    for user in sorted(frame["agent"].unique()):
        summary = get_query(client, "student_summary", user=user, course=data.course)
        want = expected_summary(frame, user)
        assert (summary["user"], summary["course"]) == (user, data.course)
        assert summary == pytest.approx({"user": user, "course": data.course, **want}), user
        graded += want["grade"] is not None
    assert graded >= 6


@pytest.mark.parametrize("fmt", FORMATS)
def test_student_view_is_a_table_of_the_summary(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    user = sorted(facts(data)["agent"].unique())[0]
    summary = get_query(client, "student_summary", user=user, course=data.course)
    response = client.get("/view/student_view", query_string={"user": user, "course": data.course})
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert f"<caption>{html.escape(user)} in {html.escape(data.course)}</caption>" in page
    assert f'<tr><th scope="row">Events</th><td>{summary["events"]}</td></tr>' in page
    assert f'<tr><th scope="row">Problems solved</th><td>{summary["problems_solved"]}</td></tr>' in page
    assert f"<td>{summary['watched_minutes']:.1f}</td>" in page


def test_student_view_escapes_what_it_is_given(client: FlaskClient) -> None:
    params = {"user": "<script>x</script>", "course": "c&d"}
    page = client.get("/view/student_view", query_string=params).get_data(as_text=True)
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt; in c&amp;d" in page
    assert '<tr><th scope="row">Grade (%)</th><td>-</td></tr>' in page
