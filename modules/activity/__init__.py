"""Course activity over time: events and distinct active users per day and per hour.

The handler keeps one small record per event (course, agent, timestamp), keyed by the
event id and written with ``$setOnInsert``, so redelivered events change nothing. The
queries count with pandas. Periods are UTC: a day is a UTC calendar day, an hour a UTC
clock hour; periods without any event are left out.
"""

from datetime import UTC, datetime

import pandas as pd
from matplotlib.figure import Figure
from pymongo import UpdateOne

from tasks import event_handler, query, view

COLLECTION = "activity"
COLUMNS = ["period", "events", "active_users"]


@event_handler()
def record_activity(mongodb, events):
    """Keep (event id, course, agent, timestamp) of every event that names a course."""
    writes = [_record(evt) for evt in events if evt.course]
    if writes:
        mongodb[COLLECTION].bulk_write(writes, ordered=False)


def _record(evt):
    """The idempotent upsert of one event's activity record (the receive time if it has no timestamp)."""
    when = evt.timestamp or datetime.fromtimestamp(evt.received or 0, UTC)
    fields = {"course": evt.course, "agent": evt.agent, "timestamp": when}
    return UpdateOne({"_id": evt.id}, {"$setOnInsert": fields}, upsert=True)


def course_frame(mongodb, course, user=None):
    """The activity records of a course (optionally one user's): columns agent, timestamp (UTC)."""
    selector = {"course": course} if user is None else {"course": course, "agent": user}
    docs = list(mongodb[COLLECTION].find(selector, {"_id": 0, "agent": 1, "timestamp": 1}))
    frame = pd.DataFrame(docs, columns=["agent", "timestamp"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def per_period(frame, freq):
    """Events and distinct agents per period (``"D"`` or ``"h"``), oldest first."""
    if frame.empty:
        return pd.DataFrame({"period": pd.Series(dtype="datetime64[ns, UTC]"), "events": [], "active_users": []})
    grouped = frame.groupby(frame["timestamp"].dt.floor(freq).rename("period"))
    table = grouped.agg(events=("timestamp", "size"), active_users=("agent", "nunique"))
    return table.reset_index()[COLUMNS].astype({"events": int, "active_users": int})


@query()
def activity_by_day(mongodb, course):
    """Per UTC day of a course: ``period`` (the day's start), ``events``, ``active_users`` (distinct agents)."""
    return per_period(course_frame(mongodb, course), "D")


@query()
def activity_by_hour(mongodb, course):
    """Per UTC clock hour of a course: ``period`` (the hour's start), ``events``, ``active_users``."""
    return per_period(course_frame(mongodb, course), "h")


@query()
def student_activity(mongodb, user, course):
    """One student's activity in a course: ``events`` and ``active_days`` (distinct UTC days with an event)."""
    frame = course_frame(mongodb, course, user)
    days = frame["timestamp"].dt.floor("D").nunique()
    return {"events": len(frame), "active_days": int(days)}


@view()
def activity_plot(query, course):
    """Bar chart of events per day in a course, with the day's active users as a line."""
    table = query.activity_by_day(course)
    figure = Figure(figsize=(7, 3.5))
    axes = figure.add_subplot()
    axes.set_title(f"Activity in {course}")
    if table.empty:
        axes.text(0.5, 0.5, "no activity yet", ha="center", va="center", transform=axes.transAxes)
        return figure
    days = [period.strftime("%Y-%m-%d") for period in table["period"]]
    axes.bar(days, table["events"], color="#3b7dd8", label="events")
    axes.set_ylabel("events")
    users = axes.twinx()
    users.plot(days, table["active_users"], color="#d8663b", marker="o", label="active users")
    users.set_ylabel("active users")
    users.set_ylim(bottom=0)
    axes.tick_params(axis="x", labelrotation=30)
    figure.legend(loc="upper right")
    figure.tight_layout()
    return figure
