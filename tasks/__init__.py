"""Insights: analytics modules as Celery tasks.

The authoring API for analytics modules::

    from tasks import view, query, event_handler, event_property, cron, render
"""

from tasks.decorators import event_handler, event_property, query, view
from tasks.events import Event
from tasks.memo import memoize_query
from tasks.render import render, static_url
from tasks.schedule import cron

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
