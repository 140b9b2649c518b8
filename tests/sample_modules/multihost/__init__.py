"""A test-only module for the multi-host test (tests/multihost): what each host's processes did.

Opt-in (``OPT_IN``): only the multi-host deployments load it, so its per-user handler and its
two-second job cost nothing elsewhere. Everything it records names the process that did it
(``os.getpid()``: a shard worker runs its tasks in its own process, ``-P solo``), so the test
can tell which host handled an event, wrote a file or ran a job.
"""

import io
import os
import time
from datetime import datetime

from celery import current_task
from matplotlib.figure import Figure
from pymongo import UpdateOne

from tasks import cron, event_handler, query, view

OPT_IN = True  # tasks/core/registry.py: loaded only when named (tests.sample_modules.multihost)

TICK_EVERY = 2.0  # seconds between runs of the scheduled job


@event_handler(per_user=True)
def ordered(mongodb, events):
    """Per event id of a multi-host run (``mh_run``): how often it was delivered, by which
    processes and when; per user, the sequence numbers (``seq``) in the order they were handled."""
    tagged = [evt for evt in events if "mh_run" in evt]
    if not tagged:
        return
    pid, now = os.getpid(), time.time()
    mongodb["deliveries"].bulk_write(
        [
            UpdateOne(
                {"_id": evt.id},
                {
                    "$inc": {"deliveries": 1},
                    "$set": {"run": evt["mh_run"], "user": evt["username"], "seq": evt["seq"]},
                    "$push": {"pids": pid, "times": now},
                },
                upsert=True,
            )
            for evt in tagged
        ],
        ordered=True,
    )
    seen: dict[str, list[int]] = {}
    for evt in tagged:
        seen.setdefault(f"{evt['mh_run']}:{evt['username']}", []).append(evt["seq"])
    for key, numbers in seen.items():
        run, user = key.split(":", 1)
        mongodb["sequences"].update_one(
            {"_id": key}, {"$push": {"seq": {"$each": numbers}}, "$set": {"run": run, "user": user}}, upsert=True
        )


@view()
def figure(fs, label):
    """Draws a small figure, writes it to ``figures/<label>.png`` in the module's ``fs`` itself and
    shows it; ``data-pid`` names the worker process that wrote it."""
    plot = Figure(figsize=(1, 1))
    plot.add_subplot().plot([0, 1, 2], [2, 0, 1])
    data = io.BytesIO()
    plot.savefig(data, format="png")
    filename = f"figures/{label}.png"
    with fs.open(filename, "wb") as f:
        f.write(data.getvalue())
    return f'<html><body><img src="{fs.get_url(filename)}" data-pid="{os.getpid()}"></body></html>'


@query()
def expire_file(fs, filename, seconds):
    """Have ``filename`` expire in ``seconds`` (the sweeper then deletes it)."""
    fs.expire(filename, float(seconds))
    return filename


@query()
def keep_file(fs, filename):
    """Drop the expiry of ``filename``: a file the sweeper did not delete is then served again."""
    fs.expire(filename, 0, expires=False)
    return filename


@cron(run_every=TICK_EVERY, keep=120)
def tick(mongodb):
    """Every two seconds: records the run (when beat sent it, which process ran it) and returns a
    tiny HTML report. Beat sends each run with ``expires`` = its send time + the period."""
    now = time.time()
    expires = getattr(current_task.request, "expires", None) if current_task else None
    if isinstance(expires, str):
        sent = datetime.fromisoformat(expires).timestamp() - TICK_EVERY
    elif isinstance(expires, datetime):
        sent = expires.timestamp() - TICK_EVERY
    else:
        sent = now
    mongodb["ticks"].insert_one({"t": now, "sent": sent, "pid": os.getpid()})
    return f"<html><body><p>tick sent at {sent:.3f}, run at {now:.3f} by {os.getpid()}</p></body></html>"
