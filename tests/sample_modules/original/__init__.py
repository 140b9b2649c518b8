"""A module written the way the original edX Insights modules were (loaded with tests.sample_modules).

Written in the original's style — its imports aside (``from tasks import ...`` instead of
``edinsights.core.decorators`` and ``edinsights.core.helpers``): its options (category,
description and args on views and queries; batch, single_process and source_queue on
handlers; description on properties), its get_replica_* helpers, and a query and a view
sharing one Python name, as the original's test module did with ``djt_fake_user_count``.
Handlers act only on events carrying their marker (``orig_run``), so that every other test's
events pass through them cheaply.
"""

import os

from tasks import (
    cron,
    event_handler,
    event_property,
    get_replica_cache,
    get_replica_database,
    get_replica_filesystem,
    memoize_query,
    query,
    view,
)


@query(category="global", description="Used as test case for query objects", args=[])
def orig_fake_user_count():
    return 2


@view(description="Calls the query of the same name through the query object.", args=["query"])
def orig_fake_user_count(query):  # noqa: F811 - the original's shape: the view rebinds the query's name
    """A docstring the description replaces."""
    return f"<html>Users: {query.orig_fake_user_count()}</html>"


@query(name=["orig_three_name", "edx_orig_three_name", "edx.orig_three_name"])
def orig_three_name():
    return "I have three names"


@event_property(name="orig_agent", description="The user that generated the event (Tin Can's agent).")
def orig_agent(event):
    if "user" in event:
        return event["user"]
    elif "username" in event:
        return event["username"]
    else:
        return None


@event_handler(batch=False)
def orig_event_count_event(mongodb, events):
    """Called once per event, with a list of that one event, as the original did; raises on
    events marked ``orig_fail`` (only that event is dead-lettered)."""
    for evt in events:
        if "orig_run" not in evt:
            continue
        if evt.get("orig_fail"):
            raise ValueError("asked to fail by event {n}".format(n=evt["n"]))
        mongodb["calls"].update_one(
            {"_id": evt.id},
            {"$set": {"run": evt["orig_run"], "n": evt["n"], "events_in_call": len(events), "agent": evt.orig_agent}},
            upsert=True,
        )


@query(category="per run")
def orig_calls(mongodb, run):
    """Per event of a run: how many events the handler was given in the call that handled it."""
    return {str(doc["n"]): doc["events_in_call"] for doc in mongodb["calls"].find({"run": run})}


@query()
def orig_agents(mongodb, run):
    """The agents (event property orig_agent) of a run's events, by event number."""
    return {str(doc["n"]): doc["agent"] for doc in mongodb["calls"].find({"run": run})}


@event_handler(single_process=True)
def orig_serial(mongodb, events):
    """Cannot be distributed across processes: every event, in order, in one process."""
    for evt in events:
        if "orig_serial" in evt:
            mongodb["serial"].update_one(
                {"_id": evt["orig_serial"]},
                {"$push": {"seq": evt["seq"]}, "$addToSet": {"pids": os.getpid()}},
                upsert=True,
            )


@query()
def orig_serial_seen(mongodb, run):
    """The sequence numbers of a run in the order the single-process handler saw them, and its processes."""
    doc = mongodb["serial"].find_one({"_id": run}) or {"seq": [], "pids": []}
    return {"seq": doc["seq"], "processes": len(doc["pids"])}


@event_handler(batch=False, source_queue="reports")
def orig_on_queue(cache, event):
    """On its own queue (the original's source_queue), one event at a time, taken as ``event``."""
    if "orig_queue" in event:
        cache.set("queue:" + event["orig_queue"], event["value"], 60)


@query()
def orig_cache_get(cache, key):
    return cache.get(key)


@query()
def orig_replica_user_count(user):
    """Events of one user counted by the test module, read from its database."""
    doc = get_replica_database("testmodule")["user_event_count"].find_one({"_id": user})
    return doc["event_count"] if doc else 0


@query()
def orig_replica_readfile(filename):
    """A file of the test module's file store (named by its Python package, as the original did)."""
    fs = get_replica_filesystem("modules.testmodule")
    if fs.exists(filename):
        with fs.open(filename) as f:
            return f.read()
    return "File not found"


@query()
def orig_replica_cache_get(key):
    """A value of the test module's cache."""
    return get_replica_cache("testmodule").get(key)


@query()
def orig_replica_write(store):
    """Tries to write into the test module's database, file store or cache: refused."""
    if store == "mongodb":
        get_replica_database("testmodule")["user_event_count"].delete_many({})
    elif store == "fs":
        get_replica_filesystem("testmodule").remove("anything.txt")
    elif store == "cache":
        get_replica_cache("testmodule").set("last_seen_user", "mallory", 30)
    return "no such store: " + store


@cron(run_every=86400, force_memoize=True, params={"course": "demo"})
@memoize_query(cache_time=60, timeout=600)
@query()
def orig_course_size(query, course):
    """A memoized query refreshed daily (the original's cron and memoize_query options)."""
    return {"course": course, "users": query.orig_fake_user_count()}
