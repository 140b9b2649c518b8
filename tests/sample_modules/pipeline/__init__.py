"""A test-only module for the event pipeline: idempotent counting, poison events, ordering, slowness."""

import time

from pymongo import UpdateOne

from tasks import event_handler, query


@event_handler()
def count_deliveries(mongodb, events):
    """Idempotent per event id: one document per event; ``deliveries`` shows redeliveries."""
    tagged = [evt for evt in events if "run" in evt]
    for evt in tagged:
        if evt.get("slow"):
            time.sleep(float(evt["slow"]))
        mongodb["deliveries"].update_one(
            {"_id": evt.id}, {"$set": {"run": evt["run"]}, "$inc": {"deliveries": 1}}, upsert=True
        )


@query()
def delivered(mongodb, run):
    """Per event id of a run: how many times it was delivered."""
    return {doc["_id"]: doc["deliveries"] for doc in mongodb["deliveries"].find({"run": run})}


@event_handler(attempts=2, backoff=0.01)
def picky(mongodb, events):
    """Fails on a whole batch holding a poison event, until the module is "fixed"."""
    tagged = [evt for evt in events if "picky" in evt]
    fixed = mongodb["config"].find_one({"_id": "fixed"}) is not None
    if not fixed and any(evt.get("poison") for evt in tagged):
        raise ValueError("cannot digest a poison event")
    if tagged:
        mongodb["picked"].bulk_write(
            [UpdateOne({"_id": evt.id}, {"$set": {"run": evt["picky"]}}, upsert=True) for evt in tagged]
        )


@query()
def picked(mongodb, run):
    """Ids of the events of a run that ``picky`` handled."""
    return sorted(doc["_id"] for doc in mongodb["picked"].find({"run": run}))


@query()
def fix_picky(mongodb):
    """Mark the picky handler as fixed (it then accepts poison events)."""
    mongodb["config"].update_one({"_id": "fixed"}, {"$set": {"at": time.time()}}, upsert=True)
    return "fixed"


@event_handler(per_user=True)
def in_order(mongodb, events):
    """Appends each user's sequence numbers in the order the handler sees them."""
    for evt in events:
        if "order_run" in evt:
            mongodb["sequences"].update_one(
                {"_id": f"{evt['order_run']}:{evt['username']}"},
                {"$push": {"seq": evt["seq"]}, "$set": {"run": evt["order_run"], "user": evt["username"]}},
                upsert=True,
            )


@query()
def sequences(mongodb, run):
    """Per user of an ordering run: the sequence numbers in handling order."""
    return {doc["user"]: doc["seq"] for doc in mongodb["sequences"].find({"run": run})}
