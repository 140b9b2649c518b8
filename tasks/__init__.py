"""Insights: analytics modules as Celery tasks.

The authoring API for analytics modules::

    from tasks import view, query, event_handler, event_property
"""

from tasks.decorators import event_handler, event_property, query, view
from tasks.events import Event

__all__ = ["Event", "event_handler", "event_property", "query", "view"]
