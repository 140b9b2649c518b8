"""The video module end to end: plays, pauses, seeks, viewers, watched time and drop-off per video."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from flask.testing import FlaskClient

from tasks.app import Insights
from tests.modules.test_eventlog import FORMATS, assert_figure_view, dataset, facts, get_query


def watched_seconds(events: pd.DataFrame) -> float:
    """The module's documented interval rule, over one viewer's events on one video in time order."""
    total, start = 0.0, None
    for event in events.to_dict("records"):
        if event["verb"] == "played":
            start = event["position"]
        elif event["verb"] in ("paused", "stopped") and start is not None:
            total += max(0.0, event["position"] - start)
            start = None
        elif event["verb"] == "seeked" and start is not None:
            total += max(0.0, event["seek_from"] - start)
            start = event["seek_to"]
    return total


def expected_videos(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per video, from the raw events: counts, viewers, duration, watched seconds and the drop-off curve."""
    videos = {}
    for video, events in frame.groupby("object"):
        events = events.sort_values("timestamp")
        viewers = sorted(set(events.loc[events["verb"] == "played", "agent"]))
        duration = events["duration"].max()
        furthest = {}
        for viewer in viewers:
            mine = events[events["agent"] == viewer]
            furthest[viewer] = max(mine["position"].max(), mine["seek_from"].fillna(-1).max())
        reached = list(furthest.values())
        videos[video] = {
            "plays": int((events["verb"] == "played").sum()),
            "pauses": int((events["verb"] == "paused").sum()),
            "seeks": int((events["verb"] == "seeked").sum()),
            "viewers": len(viewers),
            "duration": duration,
            "watched_seconds": sum(watched_seconds(events[events["agent"] == v]) for v in viewers),
            "dropoff": [sum(f >= duration * k / 100 for f in reached) / len(viewers) for k in range(0, 101, 10)],
        }
    return videos


def video_events(frame: pd.DataFrame) -> pd.DataFrame:
    """The raw video events only."""
    return frame[frame["verb"].isin(["loaded", "played", "paused", "seeked", "stopped"])]


@pytest.mark.parametrize("fmt", FORMATS)
def test_engagement_per_video_matches_the_raw_events(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    expected = expected_videos(video_events(facts(data)))
    rows = get_query(client, "video_engagement", course=data.course)
    assert [row["video"] for row in rows] == sorted(expected) and len(expected) >= 3
    for row in rows:
        want = expected[row["video"]]
        for name in ("plays", "pauses", "seeks", "viewers"):
            assert row[name] == want[name], (row["video"], name)
        assert row["duration"] == pytest.approx(want["duration"])
        assert row["watched_seconds"] == pytest.approx(want["watched_seconds"], abs=1e-6)
    assert sum(row["watched_seconds"] for row in rows) > 60


@pytest.mark.parametrize("fmt", FORMATS)
def test_dropoff_per_video_matches_the_raw_events(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    expected = expected_videos(video_events(facts(data)))
    for video, want in expected.items():
        curve = get_query(client, "video_dropoff", course=data.course, video=video)
        assert [point["percent"] for point in curve] == list(range(0, 101, 10))
        assert [point["fraction"] for point in curve] == pytest.approx(want["dropoff"])
        assert curve[0]["fraction"] == 1.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_video_use_of_a_student_matches_the_raw_events(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    frame = video_events(facts(data))
    for user in sorted(frame["agent"].unique())[:4]:
        mine = frame[frame["agent"] == user].sort_values("timestamp")
        seconds = sum(watched_seconds(events) for _, events in mine.groupby("object"))
        answer = get_query(client, "student_videos", user=user, course=data.course)
        assert answer["videos_watched"] == mine.loc[mine["verb"] == "played", "object"].nunique()
        assert answer["watched_minutes"] == pytest.approx(seconds / 60)


@pytest.mark.parametrize("fmt", FORMATS)
def test_video_plot_is_a_figure(client: FlaskClient, insights: Insights, fmt: str) -> None:
    data = dataset(client, insights, fmt)
    assert_figure_view(client, "video", "video_plot", course=data.course)


def test_video_plot_and_dropoff_of_a_course_without_videos(client: FlaskClient) -> None:
    assert_figure_view(client, "video", "video_plot", course="course-v1:Nobody+None+Never")
    curve = get_query(client, "video_dropoff", course="course-v1:Nobody+None+Never", video="none")
    assert [point["fraction"] for point in curve] == [0.0] * 11
