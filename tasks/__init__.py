"""Insights: analytics modules as Celery tasks.

The authoring API for analytics modules::

    from tasks import view, query, event_handler, event_property, cron, render

The framework lives in layers, each importing only the ones below it (docs/architecture.md):
``errors`` < ``storage`` < ``authoring`` < ``core`` < ``pipeline`` < ``schedule`` < ``app``
< ``ops`` and ``client``. ``sender`` and ``synthetic`` stand apart (standard library only).
Importing ``tasks`` itself is cheap: the names below load on first use, so the sender can
be used without numpy, pandas or Celery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Event": "tasks.authoring.events",
    "cron": "tasks.schedule",
    "event_handler": "tasks.authoring.decorators",
    "event_property": "tasks.authoring.decorators",
    "memoize_query": "tasks.core.memo",
    "query": "tasks.authoring.decorators",
    "render": "tasks.authoring.render",
    "static_url": "tasks.authoring.render",
    "view": "tasks.authoring.decorators",
}
__all__ = [
    "Event",
    "cron",
    "event_handler",
    "event_property",
    "memoize_query",
    "query",
    "render",
    "static_url",
    "view",
]

if TYPE_CHECKING:
    from tasks.authoring.decorators import event_handler, event_property, query, view
    from tasks.authoring.events import Event
    from tasks.authoring.render import render, static_url
    from tasks.core.memo import memoize_query
    from tasks.schedule import cron


def __getattr__(name: str) -> Any:
    """Load an authoring name on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tasks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
