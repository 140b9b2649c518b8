"""Insights: analytics modules as Celery tasks.

The authoring API for analytics modules::

    from tasks import view, query, event_handler, event_property, cron, render

and the original's read-only helpers ``get_replica_database``, ``get_replica_filesystem``,
``get_replica_cache`` (another module's stores, by module name).
"""

from tasks.decorators import event_handler, event_property, query, view
from tasks.events import Event
from tasks.memo import memoize_query
from tasks.render import render, static_url
from tasks.schedule import cron
from tasks.services import get_replica_cache, get_replica_database, get_replica_filesystem

__all__ = [
    "Event",
    "cron",
    "event_handler",
    "event_property",
    "get_replica_cache",
    "get_replica_database",
    "get_replica_filesystem",
    "memoize_query",
    "query",
    "render",
    "static_url",
    "view",
]
