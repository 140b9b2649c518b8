"""The activity module end to end: events and active users per day and per hour, and its plot."""

from __future__ import annotations

import pandas as pd
import pytest
from flask.testing import FlaskClient

from tasks.app import Insights
from tests.modules.test_eventlog import FORMATS, assert_figure_view, dataset, facts, get_query


def expected_periods(frame: pd.DataFrame, freq: str) -> list[dict[str, object]]:
    """Events and distinct agents per UTC period, from the raw events, as the HTTP API answers them."""
    rows = []
    for period, events in frame.groupby(frame["timestamp"].dt.floor(freq)):
        rows.append({"period": period.isoformat(), "events": len(events), "active_users": events["agent"].nunique()})
    return rows


@pytest.mark.parametrize("fmt", FORMATS)
def test_activity_per_day_and_hour_matches_the_raw_events(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    frame = facts(data)
    assert (frame["course"] == data.course).all()
    by_day = get_query(client, "activity_by_day", course=data.course)
    assert by_day == expected_periods(frame, "D")
    assert len(by_day) == 3 and sum(row["events"] for row in by_day) == len(data.events)
    by_hour = get_query(client, "activity_by_hour", course=data.course)
    assert by_hour == expected_periods(frame, "h")
    assert get_query(client, "activity_by_day", course=f"{data.course}-unknown") == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_activity_of_a_student_matches_the_raw_events(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    frame = facts(data)
    for user, events in frame.groupby("agent"):
        answer = get_query(client, "student_activity", user=user, course=data.course)
        assert answer == {"events": len(events), "active_days": events["timestamp"].dt.date.nunique()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_activity_plot_is_a_figure(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    assert_figure_view(client, "activity", "activity_plot", course=data.course)


def test_activity_plot_of_a_course_without_events_is_still_a_figure(client: FlaskClient) -> None:
    assert_figure_view(client, "activity", "activity_plot", course="course-v1:Nobody+None+Never")
