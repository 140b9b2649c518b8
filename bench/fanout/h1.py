"""One trivial event handler: it only reads one field of every event it is given."""

from tasks import event_handler


@event_handler()
def touch_one(events):
    """Read one field of every event."""
    for e in events:
        e.get("time")
