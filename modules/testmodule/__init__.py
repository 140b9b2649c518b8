"""The behavioural reference: every feature of the framework exercised by a small function.

Ported from the original edX Insights test module (same names, same behaviour), written
against the portable pymongo API. The test suite drives each of these end to end.

Opt-in: its handlers let any event sender write files in its store, so it is loaded only
when named, ``INSIGHTS_MODULES=modules.testmodule`` (as the test suite does), never by default.
"""

import zlib

import numpy
from matplotlib.figure import Figure

from tasks import event_handler, event_property, query, render, view

OPT_IN = True  # tasks/core/registry.py: not loaded with the other modules of modules/, only when named


@query()
def djt_event_count(mongodb):
    """Number of events seen by the event-count handler since djt_clear_database."""
    doc = mongodb["event_count"].find_one({"_id": "global"})
    return doc["event_count"] if doc else 0


@query()
def djt_user_event_count(mongodb, user):
    """Number of events seen from one user since djt_clear_database."""
    doc = mongodb["user_event_count"].find_one({"_id": user})
    return doc["event_count"] if doc else 0


@query()
def djt_clear_database(mongodb):
    """Reset the global and per-user event counts."""
    mongodb["event_count"].delete_many({})
    mongodb["user_event_count"].delete_many({})
    return "Database clear"


@event_handler()
def djt_event_count_event(mongodb, events):
    """Count events globally and per user (test case for global and per-user queries)."""
    per_user: dict[str, int] = {}
    for evt in events:
        if "user" in evt:
            per_user[evt["user"]] = per_user.get(evt["user"], 0) + 1
    for user, count in per_user.items():
        mongodb["user_event_count"].update_one({"_id": user}, {"$inc": {"event_count": count}}, upsert=True)
    mongodb["event_count"].update_one({"_id": "global"}, {"$inc": {"event_count": len(events)}}, upsert=True)


@event_handler()
def djt_python_fs_forgets(fs, events):
    """Write files and set their expiry, to check that the file store forgets.

    Write a file: ``{"fs_forgets_contents": "hello world!", "filename": "foo.txt"}``;
    set or change its expiry (seconds, may be negative): ``{"fs_forgets_expiry": -5,
    "filename": "foo.txt"}``. The two may be combined in one event.
    """
    for evt in events:
        if "fs_forgets_contents" in evt:
            with fs.open(evt["filename"], "w") as f:
                f.write(evt["fs_forgets_contents"])
        if "fs_forgets_expiry" in evt:
            fs.expire(evt["filename"], evt["fs_forgets_expiry"])


@event_handler()
def djt_python_fs_event(fs, events):
    """Create (``{"event": "pyfstest", "create": name, "contents": text}``) or delete
    (``{"event": "pyfstest", "delete": name}``) files in the module's file store."""
    for evt in events:
        if evt.get("event") != "pyfstest":
            continue
        if "create" in evt:
            with fs.open(evt["create"], "w") as f:
                f.write(evt["contents"])
        if "delete" in evt and fs.exists(evt["delete"]):
            fs.remove(evt["delete"])


@query()
def djt_readfile(fs, filename):
    """Contents of a file in the module's file store, or "File not found"."""
    if fs.exists(filename):
        with fs.open(filename) as f:
            return f.read()
    return "File not found"


@query()
def djt_file_url(fs, filename):
    """The URL at which the web app serves a file of this module."""
    return fs.get_url(filename)


@query()
def djt_cache_get(cache, key):
    """The cached value under ``key`` (test case for the cache)."""
    return cache.get(key)


@event_handler()
def djt_cache_set(cache, events):
    """Cache ``value`` under ``key`` for ``timeout`` seconds:
    ``{"event": "cachetest", "key": k, "value": v, "timeout": seconds}``."""
    for evt in events:
        if evt.get("event") == "cachetest":
            cache.set(evt["key"], evt["value"], evt["timeout"])


@event_property(name="djt_agent")
def djt_agent(event):
    """The user that generated the event (Tin Can's 'agent'): ``user`` or ``username``."""
    if "user" in event:
        return event["user"]
    return event.get("username")


@event_handler()
def djt_event_property_check(cache, events):
    """Cache the agent of events marked ``event_property_check`` (test case for properties)."""
    for evt in events:
        if "event_property_check" in evt:
            cache.set("last_seen_user", evt.djt_agent, 30)


@event_handler()
def djt_fail_on_request(events):
    """Raise on events marked ``{"djt_fail": true}``: one failing handler must not stop the others."""
    for evt in events:
        if evt.get("djt_fail"):
            raise RuntimeError(f"asked to fail by event {evt.event}")


@query()
def djt_fake_user_count():
    """A constant, used as a test case for query objects."""
    return 2


@view(name="djt_fake_user_count")
def fake_user_count_view(query):
    """Calls a query through the injected ``query`` object, abstracting away where it runs."""
    return f"<html>Users: {query.djt_fake_user_count()}</html>"


@query(name=["djt_three_name", "edx_djt_three_name", "edx.djt_three_name"])
def djt_three_name():
    """A query registered under three names."""
    return "I have three names"


@query(name="djt_check_three_name")
def check_three_name(query):
    """Calls the three-named query by two of its names."""
    if query.djt_three_name() != "I have three names":
        raise AssertionError("djt_three_name gave the wrong answer")
    if query.edx_djt_three_name() != "I have three names":
        raise AssertionError("edx_djt_three_name gave the wrong answer")
    return "Works"


@view()
def djt_hello_template(who="world"):
    """Renders templates/hello.html of this module (autoescaped), linking its static CSS."""
    return render("hello.html", {"who": who})


@query(fallback=True)
def get_grades(course):
    """Dummy grades for offline development: 1000 students x 4 assignments, fixed per course.

    A fallback: an LMS data layer that defines its own ``get_grades`` replaces it.
    """
    rng = numpy.random.default_rng(zlib.crc32(course.encode()))
    return 3 * rng.standard_normal((1000, 4)) + 12 * rng.binomial(1, 0.3, (1000, 4)) + 40


@view(fallback=True)
def plot_grades(query, course):
    """Histogram of a course's grades (the original README's example), as a plot."""
    grades = query.get_grades(course)
    figure = Figure(figsize=(6, 3.5))
    axes = figure.add_subplot()
    axes.hist(numpy.asarray(grades).ravel(), bins=40, color="#3b7dd8")
    axes.set_title(f"Histogram of grades in {course}")
    axes.set_xlabel("grade")
    axes.set_ylabel("students")
    return figure
