"""A per-user handler that records which worker process handled each event and any event seen out of order."""

import os
import time
import uuid

from tasks import event_handler


@event_handler(per_user=True)
def keep_order(mongodb, events):
    """Per user: an event whose seq is more than one past the last one handled is a violation;
    a seq already handled is a re-delivery (at least once) and changes nothing."""
    for evt in events:
        key = f"{evt['run']}:{evt['username']}"
        last = (mongodb["last"].find_one({"_id": key}) or {}).get("seq", -1)
        mongodb["handled"].insert_one(
            {"_id": uuid.uuid4().hex, "run": evt["run"], "seq": evt["seq"], "pid": os.getpid()}
        )
        if evt["seq"] > last + 1:
            mongodb["violations"].insert_one(
                {"_id": uuid.uuid4().hex, "run": evt["run"], "key": key, "seq": evt["seq"]}
            )
        if evt["seq"] == last + 1:
            mongodb["last"].update_one({"_id": key}, {"$set": {"seq": evt["seq"]}}, upsert=True)
    time.sleep(max((evt.get("pause", 0) for evt in events), default=0))
