"""A test-only module for ``@cron``: it is loaded by every test deployment, so its jobs are tiny
and their reports expire after a minute. Jobs only fire while a test runs a beat process."""

import os
import time

import pandas as pd
from matplotlib.figure import Figure

from tasks import cron, memoize_query, query, view


@cron(run_every=1, keep=60)
def tick(mongodb):
    """Every second: records the run (time, worker process) and returns a tiny HTML report."""
    now = time.time()
    mongodb["ticks"].insert_one({"t": now, "pid": os.getpid()})
    return f"<html><body><p>tick at {now:.3f}</p></body></html>"


@cron(run_every=3600, params=[{"n": 2}, {"n": 3}], force_memoize=True, keep=60)
@memoize_query(cache_time=600)
@query()
def cron_square(n):
    """n squared, and when it was computed (a scheduled job keeps the cache warm)."""
    return {"n": n, "square": n * n, "at": time.time()}


@cron(run_every="0 3 * * *", keep=60)
def nightly_table():
    """A nightly CSV report, from a DataFrame."""
    return pd.DataFrame({"user": ["alice", "bob"], "events": [3, 5]})


@cron(run_every="@daily", keep=60)
@view()
def cron_chart():
    """A view whose scheduled run keeps its figure as a PNG report."""
    figure = Figure(figsize=(1, 1))
    figure.add_subplot().plot([0, 1], [1, 0])
    return figure
