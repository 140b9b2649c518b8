"""The raw event log in MongoDB: every event as it arrived, keyed by its event id.

The original edX Insights README's first example (``dump_to_db``), made idempotent:
delivery is at least once, so each event is written with ``$setOnInsert`` under
``_id = evt.id`` and a redelivered event leaves its document as it was.

An event MongoDB cannot store as a document (a key starting with ``$``, a NUL byte in
a key, an integer beyond 64 bits, a lone surrogate) is stored as its JSON text instead
(``event_json``); ``recent_events`` gives both kinds back as the same raw dicts.
"""

import json
import time

import bson
from pymongo import UpdateOne

from tasks import event_handler, query

COLLECTION = "event_log"


@event_handler()
def dump_to_db(mongodb, events):
    """Store every raw event (``event``) with its id as ``_id`` and when it was received (``received``)."""
    now = time.time()
    writes = [
        UpdateOne(
            {"_id": evt.id}, {"$setOnInsert": {**stored(evt.event), "received": evt.received or now}}, upsert=True
        )
        for evt in events
    ]
    if writes:
        mongodb[COLLECTION].bulk_write(writes, ordered=False)


def stored(raw):
    """The fields that keep a raw event: ``event`` (the document itself) or ``event_json`` (its JSON text)."""
    if not has_operator_keys(raw):
        try:
            bson.encode({"event": raw})
            return {"event": raw}
        except (bson.errors.BSONError, OverflowError, ValueError, RecursionError):
            pass
    return {"event_json": json.dumps(raw)}


def has_operator_keys(value):
    """Whether a key at any depth starts with ``$`` (update operators refuse those in a document)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if any(isinstance(key, str) and key.startswith("$") for key in item):
                return True
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


@query()
def recent_events(mongodb, limit=20):
    """The ``limit`` (default 20, at most 1000) most recently received raw events, newest first."""
    count = max(0, min(int(limit), 1000))
    if count == 0:
        return []
    cursor = mongodb[COLLECTION].find({}, {"event": 1, "event_json": 1}).sort("received", -1).limit(count)
    return [doc["event"] if "event" in doc else json.loads(doc["event_json"]) for doc in cursor]
