"""Open edX tracking-log events read as the generic vocabulary (see docs/datalayer.md).

Every public function takes the raw event mapping and never raises: a missing or
malformed field gives ``None``, ``"other"`` or ``{}``. The readers shared with
``xapi.py`` (``mapping``, ``number``, ``integer``, ``parse_time``, ``course_from_url``)
live here too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

#: event_type -> verb, for the events whose meaning does not depend on anything else.
VERBS = {
    "load_video": "loaded",
    "edx.video.loaded": "loaded",
    "play_video": "played",
    "edx.video.played": "played",
    "pause_video": "paused",
    "edx.video.paused": "paused",
    "seek_video": "seeked",
    "edx.video.position.changed": "seeked",
    "stop_video": "stopped",
    "edx.video.stopped": "stopped",
    "edx.ui.lms.sequence.next_selected": "viewed",
    "edx.ui.lms.sequence.previous_selected": "viewed",
    "edx.ui.lms.sequence.tab_selected": "viewed",
    "seq_goto": "viewed",
    "seq_next": "viewed",
    "seq_prev": "viewed",
    "edx.course.enrollment.activated": "enrolled",
}
VIDEO_VERBS = frozenset({"loaded", "played", "paused", "seeked", "stopped"})
#: URL paths that are requests made by a page, not page views.
NOT_PAGE_VIEWS = re.compile(r"^/(?:event|api/|.*/handler(?:_noauth)?/|.*/xblock/)")
COURSE_IN_URL = re.compile(r"/courses?/([^/?#]+)")


# Shared readers ---------------------------------------------------------------------
def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def text(value: Any) -> str | None:
    """A non-empty string, or a whole number as text; else None."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def number(value: Any) -> int | float | None:
    """A finite number (numeric strings too); None for booleans, NaN and anything else."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def integer(value: Any) -> int | None:
    """A whole number (from an int, an integral float or a digit string), else None."""
    value = number(value)
    if value is None or value != int(value):
        return None
    return int(value)


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO 8601 text (``Z``, offsets, any fraction; naive means UTC)."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError):  # not ISO 8601, or out of range once in UTC (year 1 at +05:00)
            return None
    return None


def course_from_url(url: Any) -> str | None:
    """The course id after ``/courses/`` (or ``/course/``) in a URL or path, if there is one."""
    match = COURSE_IN_URL.search(url) if isinstance(url, str) else None
    return match.group(1) if match else None


# The vocabulary ---------------------------------------------------------------------
def payload(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """The nested ``event``: a dict (server events) or parsed from a JSON string (browser events)."""
    value = mapping(raw).get("event")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {}
    return mapping(value)


def agent(raw: Mapping[str, Any]) -> str | None:
    """``username``, else ``context.user_id`` as text."""
    raw = mapping(raw)
    return text(raw.get("username")) or text(mapping(raw.get("context")).get("user_id"))


def verb(raw: Mapping[str, Any]) -> str:
    """The normalized verb of ``event_type`` (a URL path is a page view); ``"other"`` if unknown."""
    raw = mapping(raw)
    event_type = raw.get("event_type")
    if not isinstance(event_type, str):
        return "other"
    if event_type in VERBS:
        return VERBS[event_type]
    if event_type == "problem_check":  # the browser's twin carries only the form data
        return "answered" if raw.get("event_source") != "browser" else "other"
    if event_type.startswith("/") and not NOT_PAGE_VIEWS.match(event_type):
        return "viewed"
    return "other"


def object(raw: Mapping[str, Any]) -> str | None:
    """Video ``event.id``, problem ``event.problem_id``, the ``page`` viewed, or the course enrolled in."""
    action = verb(raw)
    if action in VIDEO_VERBS:
        return text(payload(raw).get("id"))
    if action == "answered":
        return text(payload(raw).get("problem_id"))
    if action == "viewed":
        return _page(mapping(raw))
    if action == "enrolled":
        return course(raw)
    return None


def _page(raw: Mapping[str, Any]) -> str | None:
    """``page``; for a server page view without one, ``https://<host><event_type>`` (or the path)."""
    page = text(raw.get("page"))
    if page or not isinstance(raw.get("event_type"), str):
        return page
    host = text(raw.get("host"))
    return f"https://{host}{raw['event_type']}" if host else raw["event_type"]


def course(raw: Mapping[str, Any]) -> str | None:
    """``context.course_id``, else ``event.course_id``, else the course in ``page`` or a URL event_type."""
    raw = mapping(raw)
    return (
        text(mapping(raw.get("context")).get("course_id"))
        or text(payload(raw).get("course_id"))
        or course_from_url(raw.get("page"))
        or course_from_url(raw.get("event_type"))
    )


def timestamp(raw: Mapping[str, Any]) -> datetime | None:
    """``time`` as an aware UTC datetime."""
    return parse_time(mapping(raw).get("time"))


def result(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Video positions and duration, or a problem's success, score, max_score and attempt."""
    action = verb(raw)
    data = payload(raw)
    if action in VIDEO_VERBS:
        facts = {"duration": number(data.get("duration"))}
        if action == "seeked":
            facts.update(seek_from=number(data.get("old_time")), seek_to=number(data.get("new_time")))
        elif action != "loaded":
            facts["position"] = number(data.get("currentTime"))
        return compact(facts)
    if action == "answered":
        return compact(
            success=_success(data.get("success")),
            score=number(data.get("grade")),
            max_score=number(data.get("max_grade")),
            attempt=integer(data.get("attempts")),
        )
    return {}


def _success(value: Any) -> bool | None:
    """``"correct"`` / ``"incorrect"`` (or a boolean) as a boolean."""
    if isinstance(value, bool):
        return value
    return {"correct": True, "incorrect": False}.get(value) if isinstance(value, str) else None


def compact(facts: Mapping[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    """The facts that are known (not None)."""
    return {k: v for k, v in {**(facts or {}), **more}.items() if v is not None}
