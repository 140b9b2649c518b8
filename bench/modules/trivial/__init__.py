"""Four trivial event handlers: each only reads one field of every event it is given."""

from tasks import event_handler


@event_handler()
def touch_a(events):
    """Read one field of every event."""
    for e in events:
        e["n"]


@event_handler()
def touch_b(events):
    """Read one field of every event."""
    for e in events:
        e["n"]


@event_handler()
def touch_c(events):
    """Read one field of every event."""
    for e in events:
        e["n"]


@event_handler()
def touch_d(events):
    """Read one field of every event."""
    for e in events:
        e["n"]
