"""Video engagement: plays, pauses, seeks, watched time, viewers and drop-off per video.

The handler keeps one record per video event (loaded, played, paused, seeked, stopped),
keyed by the event id and written with ``$setOnInsert`` (redelivery changes nothing);
the queries compute everything with pandas from those records.

**Watched seconds** are summed over the play intervals of each viewer session (one
viewer on one video), walking that viewer's events on the video in time order:

- ``played`` at position *p* opens an interval at *p* (replacing any interval still open);
- ``paused`` or ``stopped`` at position *q* closes the open interval: it adds ``max(0, q - p)``;
- ``seeked`` from *a* to *b* while an interval is open closes it at *a* (adding
  ``max(0, a - p)``) and opens a new one at *b* (playback goes on after a seek);
  a seek while paused only moves the playhead;
- an interval still open after the viewer's last event is not counted.

Positions, not clock times, are used: watched time is video time covered.

**Viewers** of a video are the distinct agents with at least one ``played`` event on it.
**Drop-off**: each viewer's furthest position is the largest ``position`` of their
played/paused/stopped events and ``seek_from`` of their seeks on the video (where a seek
lands is not "reached"). At each 10 % step *k* of the video's duration, the curve is the
fraction of viewers whose furthest position is at least *k* % of the duration. The
duration is the largest ``duration`` any event of the video reported, else the furthest
position any viewer reached.
"""

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pymongo import UpdateOne

from tasks import event_handler, query, view

COLLECTION = "video_events"
VERBS = ("loaded", "played", "paused", "seeked", "stopped")
FIELDS = ("position", "seek_from", "seek_to", "duration")
RECORD_COLUMNS = ["video", "agent", "verb", "timestamp", *FIELDS]
ENGAGEMENT_COLUMNS = ["video", "duration", "plays", "pauses", "seeks", "viewers", "watched_seconds"]
STEPS = list(range(0, 101, 10))


@event_handler()
def record_video_events(mongodb, events):
    """Keep (video, agent, verb, timestamp, position, seek_from, seek_to, duration) of every video event."""
    writes = [_record(evt) for evt in events if evt.verb in VERBS and evt.course and evt.object]
    if writes:
        mongodb[COLLECTION].bulk_write(writes, ordered=False)


def _record(evt):
    """The idempotent upsert of one video event's record."""
    result = evt.result or {}
    fields = {"course": evt.course, "video": evt.object, "agent": evt.agent, "verb": evt.verb}
    fields["timestamp"] = evt.timestamp
    fields.update({name: _number(result.get(name)) for name in FIELDS})
    return UpdateOne({"_id": evt.id}, {"$setOnInsert": fields}, upsert=True)


def _number(value):
    """A float, or None when the value is missing or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def video_frame(mongodb, course, user=None):
    """A course's video records (optionally one user's), in time order."""
    selector = {"course": course} if user is None else {"course": course, "agent": user}
    docs = list(mongodb[COLLECTION].find(selector, {"_id": 0, "course": 0}))
    frame = pd.DataFrame(docs, columns=RECORD_COLUMNS)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame[list(FIELDS)] = frame[list(FIELDS)].astype(float)
    return frame.sort_values(["video", "agent", "timestamp"], kind="stable").reset_index(drop=True)


def session_seconds(session):
    """Watched seconds of one viewer session (its events in time order), by the module's interval rule."""
    total, start = 0.0, None
    for verb, position, seek_from, seek_to in session[["verb", "position", "seek_from", "seek_to"]].itertuples(
        index=False
    ):
        if verb == "played" and not math.isnan(position):
            start = position
        elif verb in ("paused", "stopped") and start is not None:
            total += max(0.0, position - start) if not math.isnan(position) else 0.0
            start = None
        elif verb == "seeked" and start is not None:
            total += max(0.0, seek_from - start) if not math.isnan(seek_from) else 0.0
            start = None if math.isnan(seek_to) else seek_to
    return total


def furthest_positions(records):
    """Each viewer's furthest position reached on one video (a Series indexed by agent)."""
    viewers = records.loc[records["verb"] == "played", "agent"].unique()
    reached = records["position"].where(records["verb"] != "seeked", records["seek_from"])
    furthest = reached.groupby(records["agent"]).max()
    return furthest.reindex(viewers).fillna(0.0)


def video_duration(records, furthest):
    """The video's duration: the largest reported one, else the furthest position reached."""
    duration = records["duration"].max()
    if not pd.isna(duration) and duration > 0:
        return float(duration)
    return float(furthest.max()) if len(furthest) else 0.0


def engagement_row(video, records):
    """One video's engagement figures."""
    counts = records["verb"].value_counts()
    furthest = furthest_positions(records)
    watched = sum(session_seconds(s) for _, s in records.groupby("agent", sort=False))
    return {
        "video": video,
        "duration": video_duration(records, furthest),
        "plays": int(counts.get("played", 0)),
        "pauses": int(counts.get("paused", 0)),
        "seeks": int(counts.get("seeked", 0)),
        "viewers": len(furthest),
        "watched_seconds": float(watched),
    }


def engagement_table(frame):
    """Engagement figures of every video in ``frame``, one row per video (sorted by video id)."""
    rows = [engagement_row(video, records) for video, records in frame.groupby("video")]
    return pd.DataFrame(rows, columns=ENGAGEMENT_COLUMNS)


def dropoff(records):
    """The drop-off curve of one video: ``percent`` (0, 10, …, 100) and ``fraction`` of viewers."""
    furthest = furthest_positions(records)
    duration = video_duration(records, furthest)
    reached = furthest.to_numpy()
    fractions = [float(np.mean(reached >= duration * k / 100)) if len(reached) else 0.0 for k in STEPS]
    return pd.DataFrame({"percent": STEPS, "fraction": fractions})


@query()
def video_engagement(mongodb, course):
    """Per video of a course: duration, plays, pauses, seeks, viewers and watched_seconds (see the module doc)."""
    return engagement_table(video_frame(mongodb, course))


@query()
def video_dropoff(mongodb, course, video):
    """Drop-off of one video: per 10 % step, the fraction of its viewers who got at least that far."""
    frame = video_frame(mongodb, course)
    return dropoff(frame[frame["video"] == video])


@query()
def student_videos(mongodb, user, course):
    """One student's video use in a course: ``videos_watched`` (videos played) and ``watched_minutes``."""
    frame = video_frame(mongodb, course, user)
    played = frame.loc[frame["verb"] == "played", "video"].nunique()
    seconds = sum(session_seconds(s) for _, s in frame.groupby("video", sort=False))
    return {"videos_watched": int(played), "watched_minutes": seconds / 60}


def short_label(video, width=18):
    """A video id shortened for an axis: its last path segment, cut to ``width`` characters."""
    tail = str(video).rstrip("/").rsplit("/", 1)[-1].rsplit("@", 1)[-1]
    return tail if len(tail) <= width else tail[: width - 1] + "…"


@view()
def video_plot(mongodb, course):
    """Watched minutes per video (bars) and each video's drop-off curve (lines), for one course."""
    frame = video_frame(mongodb, course)
    figure = Figure(figsize=(10, 4))
    bars, curves = figure.subplots(1, 2)
    figure.suptitle(f"Videos in {course}")
    if frame.empty:
        bars.text(0.5, 0.5, "no video events yet", ha="center", va="center", transform=bars.transAxes)
        return figure
    table = engagement_table(frame)
    labels = [short_label(v) for v in table["video"]]
    bars.bar(labels, table["watched_seconds"] / 60, color="#3b7dd8")
    bars.set_ylabel("watched minutes")
    bars.tick_params(axis="x", labelrotation=45, labelsize=7)
    for (_video, records), label in zip(frame.groupby("video"), labels, strict=True):
        curve = dropoff(records)
        curves.plot(curve["percent"], curve["fraction"], marker=".", label=label)
    curves.set_xlabel("% of the video")
    curves.set_ylabel("viewers still watching")
    curves.set_ylim(0, 1.05)
    curves.legend(fontsize=6)
    figure.tight_layout()
    return figure
