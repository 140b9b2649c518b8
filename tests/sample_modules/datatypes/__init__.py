"""A test-only analytics module (loaded through INSIGHTS_MODULES): rich result types and failures."""

import datetime
import json
import time

import numpy as np
import pandas as pd

from tasks import memoize_query, query, view


@query()
def grades_array(course):
    """A deterministic numpy array of grades for a course."""
    return np.arange(6, dtype=np.int64).reshape(2, 3) + len(course)


@query()
def grades_frame(course):
    """A pandas DataFrame with a datetime column and a missing value."""
    return pd.DataFrame(
        {
            "student": ["a", "b"],
            "grade": [0.5, np.nan],
            "when": pd.to_datetime(["2026-01-01T10:00:00", "2026-01-02T11:30:00"]),
            "course": [course, course],
        }
    )


@query()
def grades_series():
    """A pandas Series indexed by student."""
    return pd.Series({"a": np.int64(3), "b": np.int64(4)}, name="grades")


@query()
def moment():
    """A timezone-aware datetime."""
    return datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)


@query()
def mean_grade(query, course):
    """Uses another query's numpy result in-process: types survive the call."""
    grades = query.grades_array(course)
    assert isinstance(grades, np.ndarray)
    return float(grades.mean())


@query()
def echo(params, greeting="hello"):
    """Returns its named argument and the extra ones it got in ``params``."""
    return {"greeting": greeting, "params": params}


@query()
def echo_any(value=None):
    """Returns its argument, whatever JSON it is (unannotated, no typed default: not converted)."""
    return value


@query()
def from_json(text):
    """The JSON value ``text`` holds, whatever it is (to feed stored-looking data into a chain)."""
    return json.loads(text)


@query()
def sleepy(seconds):
    """Sleeps, to test time-outs."""
    time.sleep(float(seconds))
    return "awake"


@view()
def broken_view():
    """Always raises, to test how module errors reach HTTP clients."""
    raise ValueError("this view is broken on purpose")


@query(queue="reports")
def on_reports_queue():
    """Routed to the reports queue by its decorator."""
    return "ran on reports"


@memoize_query(cache_time=60, timeout=10, ignores=["verbose"])
@query()
def slow_total(mongodb, course, seconds="0.5", verbose="no"):
    """Counts its own computations (per course) and takes ``seconds``: a slow memoized query."""
    time.sleep(float(seconds))
    doc = mongodb["computations"].find_one_and_update(
        {"_id": course}, {"$inc": {"n": 1}}, upsert=True, return_document=True
    )
    return {"course": course, "computation": doc["n"]}


@query()
def computations(mongodb, course):
    """How often slow_total was computed for a course."""
    doc = mongodb["computations"].find_one({"_id": course})
    return doc["n"] if doc else 0


@query()
def total(values):
    """The sum of all numbers in ``values`` (arrays, nested lists, or a list of them)."""
    if isinstance(values, list):
        return float(sum(np.asarray(v, dtype=float).sum() for v in values))
    return float(np.asarray(values, dtype=float).sum())


@query()
def explode(values):
    """Always fails, to test how a composition names its failing step."""
    raise RuntimeError(f"cannot use {type(values).__name__}")


@memoize_query(cache_time=600, timeout=30)
@query()
def square(n):
    """n², memoized; fails for 13 (to test recomputation reports)."""
    if int(n) == 13:
        raise ValueError("13 is unlucky")
    return int(n) ** 2


@query()
def typed_args(
    days: float = 7.0, count: int = 3, flag: bool = False, label: str | None = None, ids: list[int] | None = None
):
    """Each argument with the name of its Python type, as the function received it."""
    values = {"days": days, "count": count, "flag": flag, "label": label, "ids": ids}
    return {name: [value, type(value).__name__] for name, value in values.items()}


@query()
def hours_in(days=7):
    """``days`` in hours; unannotated, so its type comes from its default."""
    return {"days": days, "type": type(days).__name__, "hours": float(days) * 24}


@query()
def _private_total(values):
    """Private to this module (a leading underscore): never served, never listed."""
    return sum(values)
