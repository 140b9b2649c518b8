"""The data layer: the generic event vocabulary of docs/datalayer.md as event properties.

Each property dispatches on the event's shape: an xAPI statement (``actor`` and ``verb``
objects) is read by ``xapi.py``, anything else as an Open edX tracking-log event by
``openedx.py``. Analytics modules read ``evt.agent``, ``evt.verb``, ``evt.object``,
``evt.course``, ``evt.timestamp`` and ``evt.result`` and work on both formats. No
property raises on a malformed event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import ModuleType
from typing import Any

from modules.datalayer import openedx, xapi
from modules.datalayer.xapi import is_xapi
from tasks import event_property

NAMES = ("agent", "verb", "object", "course", "timestamp", "result")
__all__ = ["NAMES", "is_xapi", "openedx", "vocabulary", "xapi"]


def layer(raw: Any) -> ModuleType:
    """The reader of an event's format: ``xapi`` or ``openedx``."""
    return xapi if is_xapi(raw) else openedx


def vocabulary(raw: Mapping[str, Any]) -> dict[str, Any]:
    """All six properties of a raw event (or an Event) as a dict, e.g. for tests and exports."""
    reader = layer(raw)
    return {name: getattr(reader, name)(raw) for name in NAMES}


@event_property()
def agent(evt: Mapping[str, Any]) -> str | None:
    """Who: Open edX ``username`` (else ``context.user_id``); xAPI ``actor.account.name`` (else ``mbox``)."""
    return layer(evt).agent(evt)


@event_property()
def verb(evt: Mapping[str, Any]) -> str:
    """What: viewed, played, paused, seeked, stopped, loaded, answered, enrolled or other."""
    return layer(evt).verb(evt)


@event_property(name="object")
def object_(evt: Mapping[str, Any]) -> str | None:
    """The resource: a video id, a problem usage key, a page URL, or the course enrolled in."""
    return layer(evt).object(evt)


@event_property()
def course(evt: Mapping[str, Any]) -> str | None:
    """The course id (``course-v1:Org+Code+Run``)."""
    return layer(evt).course(evt)


@event_property()
def timestamp(evt: Mapping[str, Any]) -> datetime | None:
    """When: an aware UTC datetime (None if the event has no readable time)."""
    return layer(evt).timestamp(evt)


@event_property()
def result(evt: Mapping[str, Any]) -> dict[str, Any]:
    """Verb-specific facts: success, score, max_score, attempt, position, seek_from, seek_to, duration."""
    return layer(evt).result(evt)
