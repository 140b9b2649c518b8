"""Ten trivial event handlers: each only reads one field of every event it is given."""

from tasks import event_handler


@event_handler()
def touch_0(events):
    """Read one field of every event."""
    for e in events:
        e.get("time")


@event_handler()
def touch_1(events):
    """Read one field of every event."""
    for e in events:
        e.get("time")


@event_handler()
def touch_2(events):
    """Read one field of every event."""
    for e in events:
        e.get("time")


@event_handler()
def touch_3(events):
    """Read one field of every event."""
    for e in events:
        e.get("time")


@event_handler()
def touch_4(events):
    """Read one field of every event."""
    for e in events:
        e.get("time")


@event_handler()
def touch_5(events):
    """Read one field of every event."""
    for e in events:
        e.get("time")


@event_handler()
def touch_6(events):
    """Read one field of every event."""
    for e in events:
        e.get("time")


@event_handler()
def touch_7(events):
    """Read one field of every event."""
    for e in events:
        e.get("time")


@event_handler()
def touch_8(events):
    """Read one field of every event."""
    for e in events:
        e.get("time")


@event_handler()
def touch_9(events):
    """Read one field of every event."""
    for e in events:
        e.get("time")
