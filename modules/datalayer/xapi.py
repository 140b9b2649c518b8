"""xAPI statements read as the generic vocabulary (see docs/datalayer.md).

Every public function takes the raw statement mapping and never raises: a missing or
malformed field gives ``None``, ``"other"`` or ``{}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from modules.datalayer.openedx import compact, course_from_url, integer, mapping, number, parse_time, text

ADL = "http://adlnet.gov/expapi/verbs/"
VIDEO = "https://w3id.org/xapi/video/"
VERBS = {
    ADL + "experienced": "viewed",
    "http://id.tincanapi.com/verb/viewed": "viewed",
    VIDEO + "verbs/initialized": "loaded",
    VIDEO + "verbs/played": "played",
    VIDEO + "verbs/paused": "paused",
    VIDEO + "verbs/seeked": "seeked",
    ADL + "answered": "answered",
    ADL + "registered": "enrolled",
}
#: Verbs that mean a video verb only when their object is a video.
VIDEO_ONLY_VERBS = {ADL + "completed": "stopped", ADL + "terminated": "stopped", ADL + "initialized": "loaded"}
VIDEO_TYPE = VIDEO + "activity-type/video"
COURSE_TYPE = "http://adlnet.gov/expapi/activities/course"
TIME = VIDEO + "extensions/time"
TIME_FROM = VIDEO + "extensions/time-from"
TIME_TO = VIDEO + "extensions/time-to"
LENGTH = VIDEO + "extensions/length"
ATTEMPT = "http://id.tincanapi.com/extension/attempt-id"
COURSE_ID_EXTENSIONS = ("course_id", "course-id")  # last path segment of a context extension key


def is_xapi(raw: Any) -> bool:
    """An xAPI statement has ``actor`` and ``verb`` objects; anything else is read as Open edX."""
    return isinstance(raw, Mapping) and isinstance(raw.get("actor"), Mapping) and isinstance(raw.get("verb"), Mapping)


def agent(raw: Mapping[str, Any]) -> str | None:
    """``actor.account.name``, else ``actor.mbox`` without ``mailto:``."""
    actor = mapping(mapping(raw).get("actor"))
    name = text(mapping(actor.get("account")).get("name"))
    mbox = actor.get("mbox")
    return name or (mbox.removeprefix("mailto:") or None if isinstance(mbox, str) else None)


def verb(raw: Mapping[str, Any]) -> str:
    """The normalized verb of ``verb.id``; ``completed``/``terminated``/ADL ``initialized`` only on videos."""
    verb_id = mapping(mapping(raw).get("verb")).get("id")
    if not isinstance(verb_id, str):
        return "other"
    if verb_id in VIDEO_ONLY_VERBS:
        return VIDEO_ONLY_VERBS[verb_id] if _is_video(raw) else "other"
    return VERBS.get(verb_id, "other")


def _is_video(raw: Mapping[str, Any]) -> bool:
    """Whether the statement's object is a video (by activity type or usage key)."""
    obj = mapping(mapping(raw).get("object"))
    kind = mapping(obj.get("definition")).get("type")
    return kind == VIDEO_TYPE or "type@video" in (text(obj.get("id")) or "")


def object(raw: Mapping[str, Any]) -> str | None:
    """``object.id``: the usage key after ``/xblock/``, the course id of a course, else the IRI itself."""
    obj = mapping(mapping(raw).get("object"))
    iri = text(obj.get("id"))
    if iri is None:
        return None
    if "/xblock/" in iri:
        return unquote(iri.rsplit("/xblock/", 1)[1]) or None
    if mapping(obj.get("definition")).get("type") == COURSE_TYPE or verb(raw) == "enrolled":
        return _course_id(iri) or iri
    return iri


def _course_id(iri: Any) -> str | None:
    """The course id in a course IRI (``https://lms.example/courses/<course_id>``)."""
    found = course_from_url(iri)
    return unquote(found) if found else None


def course(raw: Mapping[str, Any]) -> str | None:
    """``contextActivities.parent[0].id``, else a ``.../course_id`` context extension, else a course object."""
    context = mapping(mapping(raw).get("context"))
    parents = mapping(context.get("contextActivities")).get("parent")
    first = parents[0] if isinstance(parents, list) and parents else parents
    found = _course_id(mapping(first).get("id"))
    if found:
        return found
    for key, value in mapping(context.get("extensions")).items():
        if isinstance(key, str) and key.rstrip("/").rsplit("/", 1)[-1] in COURSE_ID_EXTENSIONS and text(value):
            return text(value)
    obj = mapping(mapping(raw).get("object"))
    return _course_id(obj.get("id")) if mapping(obj.get("definition")).get("type") == COURSE_TYPE else None


def timestamp(raw: Mapping[str, Any]) -> datetime | None:
    """``timestamp`` (else ``stored``) as an aware UTC datetime."""
    raw = mapping(raw)
    return parse_time(raw.get("timestamp")) or parse_time(raw.get("stored"))


def result(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Success, score, attempt, video time / time-from / time-to and length, where the statement has them."""
    raw = mapping(raw)
    outcome = mapping(raw.get("result"))
    extensions = mapping(outcome.get("extensions"))
    context_extensions = mapping(mapping(raw.get("context")).get("extensions"))
    score = mapping(outcome.get("score"))
    success = outcome.get("success")
    return compact(
        success=success if isinstance(success, bool) else None,
        score=number(score.get("raw")),
        max_score=number(score.get("max")),
        attempt=integer(extensions.get(ATTEMPT)),
        position=number(extensions.get(TIME)),
        seek_from=number(extensions.get(TIME_FROM)),
        seek_to=number(extensions.get(TIME_TO)),
        duration=number(context_extensions.get(LENGTH, extensions.get(LENGTH))),
    )
