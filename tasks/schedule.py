"""``@cron``: functions run on a schedule by Celery beat, their output kept as reports.

::

    @cron(run_every=3600)                      # seconds, a timedelta, or "m h dom mon dow"
    def weekly_summary(mongodb):
        return "<html>...</html>"              # -> fs: reports/weekly_summary-<UTC time>.html

``@cron`` stands alone (a scheduled job only: task ``cron.<module>.<function>`` on the
``reports`` queue) or stacks with ``@query`` / ``@view``: the job then runs the query or
view as it is registered (its name, its memoization), once per ``params`` dict, and
``force_memoize=True`` recomputes a ``@memoize_query`` result so dashboards read a warm
cache. The function stays a plain callable.

What a run returns becomes a report in the module's ``fs``, expiring after ``keep``
seconds (7 days by default): an HTML string (``.html``), CSV as a string or bytes or a
pandas object (``.csv``), a matplotlib figure or PNG bytes (``.png``). ``None`` and other
values (e.g. a query's data) are not written. ``Insights.reports()`` lists the reports;
the dashboard shows them at ``/reports``.

Beat runs RedBeat (``config/celery.py``, ``SteadyRedBeatScheduler``): a second beat started by
mistake waits on the lock in Redis instead of sending every job twice, and a beat that lost
Redis for a while stands by and takes the lock again instead of exiting. The housekeeping jobs also claim their period
in Redis (``tasks/storage/once.py``), so a job sent twice in one period (two beats, a beat whose
lock expired while it paused, a hand-sent task) runs once. The static entries come from
``config/beat.py`` (the file-store sweeper, ``maintenance.sweep_files``, and the event-log
retention, ``maintenance.prune_event_log``).
"""

from __future__ import annotations

import logging
import math
import mimetypes
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from celery.result import AsyncResult
from celery.schedules import crontab, schedule
from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tasks.authoring.decorators import QUEUE_PATTERN, Declaration, declarations_of, declare
from tasks.authoring.injection import bind_arguments
from tasks.core.memo import MODE_ARGUMENT, memo_policy
from tasks.core.presentation import _png_of
from tasks.errors import ArgumentError, RegistrationError, UnknownName
from tasks.pipeline.event_log import EventLog
from tasks.pipeline.event_logs import open_event_log
from tasks.storage.fs import FileStore
from tasks.storage.once import run_once_per_period

if TYPE_CHECKING:
    from tasks.app import Insights
    from tasks.core.registry import Spec

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

REPORTS_FOLDER = "reports"
DEFAULT_KEEP = 7 * 24 * 3600
CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
CRON_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

__all__ = [
    "DEFAULT_KEEP",
    "REPORTS_FOLDER",
    "SteadyRedBeatScheduler",
    "bind_schedule",
    "cron",
    "list_reports",
    "write_report",
]


# The decorator ---------------------------------------------------------------------------
def cron(
    run_every: Any,
    *,
    params: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
    force_memoize: bool = False,
    keep: float | timedelta = DEFAULT_KEEP,
    queue: str | None = None,
) -> Callable[[F], F]:
    """Run the function on a schedule: ``run_every`` seconds, a ``timedelta`` or a crontab string.

    ``params``: the arguments of each run (a dict), or a list of dicts for one run each.
    ``force_memoize``: on a ``@memoize_query`` function, recompute and re-cache every run.
    ``keep``: seconds (or a timedelta) a report the run returns is kept in the module's ``fs``.
    ``queue``: another queue than ``reports`` for the job's task.
    """
    if callable(run_every) and not isinstance(run_every, (int, float)):
        raise RegistrationError("@cron needs a schedule: write @cron(run_every=...), not a bare @cron")
    every = normalize_schedule(run_every)
    runs = _runs(params)
    if not isinstance(force_memoize, bool):
        raise RegistrationError(f"@cron: force_memoize must be True or False, got {force_memoize!r}")
    keep_seconds = _seconds("keep", keep)
    if queue is not None and not (isinstance(queue, str) and QUEUE_PATTERN.match(queue)):
        raise RegistrationError(f"@cron: queue must be a name like 'reports', got {queue!r}")

    def record(func: F) -> F:
        if not callable(func):
            raise RegistrationError(f"@cron decorates functions, got {func!r}")
        where = f"{func.__module__}.{func.__qualname__}"
        if any(d.kind == "cron" for d in declarations_of(func)):
            raise RegistrationError(f"@cron: {where} has two schedules; use one @cron (params= may list several runs)")
        for arguments in runs:
            try:
                bind_arguments(f"@cron on {where}", func, (), arguments)
            except ArgumentError as exc:
                raise RegistrationError(f"{exc}; give it in params=") from None
        options = {"run_every": every, "params": runs, "force_memoize": force_memoize, "keep": keep_seconds}
        declaration = Declaration("cron", (func.__name__,), queue, False, options)
        declare(func, declaration)
        return func

    return record


def normalize_schedule(run_every: Any) -> float | str:
    """``run_every`` as seconds (a float) or a crontab string; ``RegistrationError`` saying why if invalid."""
    if isinstance(run_every, str):
        return _crontab_string(run_every)
    return _seconds("run_every", run_every)


def celery_schedule(run_every: float | str) -> schedule:
    """The Celery schedule of a normalized ``run_every``."""
    if isinstance(run_every, str):
        return crontab(**dict(zip(CRON_FIELDS, run_every.split(), strict=True)))
    return schedule(timedelta(seconds=run_every))


def _crontab_string(text: str) -> str:
    fields = CRON_ALIASES.get(text.strip().lower(), text).split()
    if len(fields) != len(CRON_FIELDS):
        raise RegistrationError(
            f"@cron: {text!r} is not a crontab expression: it needs 5 fields, minute hour day-of-month "
            f"month day-of-week (e.g. '*/15 * * * *'), got {len(fields)}"
        )
    for name, value in zip(CRON_FIELDS, fields, strict=True):
        try:
            crontab(**{name: value})
        except Exception as exc:  # celery raises ValueError or its crontab ParseException
            raise RegistrationError(f"@cron: {text!r}: bad {name.replace('_', '-')} field {value!r}: {exc}") from None
    return " ".join(fields)


def _seconds(option: str, value: Any) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise RegistrationError(
            f"@cron: {option} must be a timedelta, a number of seconds"
            + (" or a crontab string" if option == "run_every" else "")
            + f", got {value!r}"
        )
    if not (math.isfinite(seconds) and seconds > 0):
        raise RegistrationError(f"@cron: {option} must be more than 0 seconds, got {value!r}")
    return float(seconds)


def _runs(params: Any) -> list[dict[str, Any]]:
    if params is None:
        return [{}]
    runs = [params] if isinstance(params, Mapping) else params
    if not isinstance(runs, (list, tuple)) or not runs or not all(isinstance(r, Mapping) for r in runs):
        raise RegistrationError(
            f"@cron: params must be a dict of arguments or a non-empty list of dicts, got {params!r}"
        )
    for run in runs:
        if not all(isinstance(k, str) for k in run):
            raise RegistrationError(f"@cron: params keys must be argument names, got {list(run)!r}")
        if MODE_ARGUMENT in run:
            raise RegistrationError(f"@cron: do not pass {MODE_ARGUMENT} in params; use force_memoize=True")
    return [dict(r) for r in runs]


# Binding to Celery and beat ---------------------------------------------------------------
def bind_schedule(app: Insights) -> None:
    """At finalize: a task per ``@cron`` spec, the maintenance tasks, and ``beat_schedule`` holding them
    (kept by RedBeat under the deployment's Redis prefix)."""
    # not at import: config.settings imports tasks
    from config.beat import (
        EXPIRE_RUNS_TASK,
        PRUNE_EVENT_LOG_EVERY,
        PRUNE_EVENT_LOG_TASK,
        SWEEP_TASK,
        static_schedule,
    )

    entries = static_schedule(app.settings)

    def sweep_files() -> int:
        """Delete every module's expired files, once per sweep interval cluster-wide (a failed sweep gives
        its period back); returns how many."""
        return run_once_per_period(
            app.services.redis, app.keys, SWEEP_TASK, app.settings.sweep_interval, lambda: sweep(app), skipped=0
        )

    def prune_event_log() -> int:
        """Delete the event log's batches (or segments) older than the retention, once a day cluster-wide
        (a failed run gives its day back); returns how many."""
        every = PRUNE_EVENT_LOG_EVERY.total_seconds()
        return run_once_per_period(
            app.services.redis, app.keys, PRUNE_EVENT_LOG_TASK, every, lambda: prune_event_log_now(app), skipped=0
        )

    app.celery.task(name=SWEEP_TASK, shared=False, typing=False)(sweep_files)

    def expire_runs() -> int:
        """Forget the results of runs nobody polled in time; returns how many."""
        return app.runs.expire(lambda task_id: AsyncResult(task_id, app=app.celery).forget())

    app.celery.task(name=PRUNE_EVENT_LOG_TASK, shared=False, typing=False)(prune_event_log)
    app.celery.task(name=EXPIRE_RUNS_TASK, shared=False, typing=False)(expire_runs)
    for spec in app.registry.specs("cron"):
        target = _target(app, spec)
        if spec.options["force_memoize"] and memo_policy(spec.func) is None:
            raise RegistrationError(
                f"@cron(force_memoize=True) on {spec.where}: {spec.func.__name__} is not memoized; "
                "add @memoize_query() or drop force_memoize"
            )
        app.celery.task(name=spec.task_name, shared=False, typing=False)(_job(app, spec, target))
        entry: dict[str, Any] = {"task": spec.task_name, "schedule": celery_schedule(spec.options["run_every"])}
        if isinstance(spec.options["run_every"], float):  # a run not started before the next is due is dropped
            entry["options"] = {"expires": max(1.0, spec.options["run_every"])}
        entries[spec.task_name] = entry
    app.celery.conf.beat_schedule = entries
    app.celery.conf.redbeat_key_prefix = app.keys.beat  # RedBeat's schedule and lock in Redis


def _target(app: Insights, spec: Spec) -> Spec:
    """What a job runs: the query or view the same function is registered as, else the function itself."""
    for kind in ("query", "view"):
        for other in app.registry.specs(kind):
            if other.func is spec.func and other.module == spec.module:
                return other
    return spec


def _job(app: Insights, spec: Spec, target: Spec) -> Callable[[], dict[str, Any]]:
    def run() -> dict[str, Any]:
        return run_job(app, spec, target)

    run.__name__ = spec.func.__name__
    run.__doc__ = spec.doc
    return run


def run_job(app: Insights, spec: Spec, target: Spec | None = None) -> dict[str, Any]:
    """One scheduled run of a ``@cron`` spec: each params dict, each result written as a report.

    A failing run does not stop the others; the task fails afterwards, naming them.
    """
    target = target or spec
    runs: list[dict[str, Any]] = spec.options["params"]
    fs = app.services.fs(spec.module)
    reports: list[str] = []
    failures: list[str] = []
    stamp = datetime.now(UTC)
    for index, arguments in enumerate(runs):
        kwargs = {**arguments, MODE_ARGUMENT: "refresh"} if spec.options["force_memoize"] else dict(arguments)
        try:
            result = app.call(target, (), kwargs)
            suffix = f"-{index}" if len(runs) > 1 else ""
            written = write_report(fs, f"{spec.func.__name__}{suffix}", result, spec.options["keep"], stamp)
        except Exception as exc:
            log.exception("%s failed with params %r", spec.task_name, arguments)
            failures.append(f"params {arguments!r}: {type(exc).__name__}: {exc}")
            continue
        if written:
            reports.append(written)
    if failures:
        raise RuntimeError(f"{spec.task_name}: {len(failures)} of {len(runs)} run(s) failed: " + "; ".join(failures))
    return {"runs": len(runs), "reports": reports}


def sweep(app: Insights) -> int:
    """Delete the expired files of every loaded module's file store; returns how many."""
    removed = 0
    for module in app.registry.modules:
        names = app.services.fs(module).sweep()
        if names:
            log.info("swept %d expired file(s) of module %s", len(names), module)
        removed += len(names)
    return removed


def prune_event_log_now(app: Insights, now: float | None = None) -> int:
    """Apply the event-log retention (``INSIGHTS_EVENTLOG_RETENTION_DAYS``) to the deployment's log; returns
    how many documents (``mongo``) or segments (``local``) went.

    With the MongoDB log this works alike from any host: one ``delete_many`` of the batches
    received before the cut-off (two runs at once delete each document once). The local segments
    of this host are pruned as well, so that those left from before a switch to MongoDB age out too.
    """
    removed = len(prune_event_log_segments(app, now))
    if app.settings.event_log == "local":
        return removed
    cutoff = (time.time() if now is None else now) - app.settings.eventlog_retention_days * 86400
    deleted = open_event_log(app.settings, app.services.mongo).remove_older(cutoff)
    if deleted:
        log.info(
            "pruned %d event-log document(s) received more than %g days ago",
            deleted, app.settings.eventlog_retention_days,
        )  # fmt: skip
    return removed + deleted


def prune_event_log_segments(app: Insights, now: float | None = None) -> list[str]:
    """Delete the local event-log segments (of this host) last written more than
    ``INSIGHTS_EVENTLOG_RETENTION_DAYS`` ago.

    Returns their names. A batcher whose idle segment goes starts a new one on its next append.
    """
    cutoff = (time.time() if now is None else now) - app.settings.eventlog_retention_days * 86400
    removed = [path.name for path in EventLog(app.settings.event_log_dir).prune(cutoff)]
    if removed:
        log.info(
            "pruned %d event-log segment(s) older than %g days", len(removed), app.settings.eventlog_retention_days
        )
    return removed


# Reports ------------------------------------------------------------------------------------
def report_content(result: Any) -> tuple[str, bytes] | None:
    """(extension, bytes) of a result worth keeping as a report, or None."""
    if result is None:
        return None
    png = _png_of(result)
    if png is not None:
        return "png", png
    if isinstance(result, (bytes, bytearray)):
        return ("csv", bytes(result)) if result else None
    if isinstance(result, str):
        if not result.strip():
            return None
        return ("html" if result.lstrip().startswith("<") else "csv"), result.encode()
    if type(result).__module__.startswith("pandas") and hasattr(result, "to_csv"):
        keep_index = type(getattr(result, "index", None)).__name__ != "RangeIndex"
        return "csv", result.to_csv(index=keep_index).encode()
    return None


def write_report(fs: FileStore, stem: str, result: Any, keep: float, now: datetime | None = None) -> str | None:
    """Write ``result`` to ``reports/<stem>-<UTC time>.<ext>`` expiring in ``keep`` seconds; its name, or None.

    The file appears complete or not at all (the store makes a file visible when it is closed),
    with its expiry already set: a crash mid-write leaves nothing, on any host.
    """
    content = report_content(result)
    if content is None:
        return None
    extension, data = content
    when = (now or datetime.now(UTC)).astimezone(UTC)
    filename = f"{REPORTS_FOLDER}/{stem}-{when:%Y%m%dT%H%M%S.%f}Z.{extension}"
    fs.expire(filename, keep)  # set first: whatever happens next, the sweeper has it
    with fs.open(filename, "wb") as f:
        f.write(data)
    return filename


def list_reports(app: Insights, module: str | None = None) -> list[dict[str, Any]]:
    """Live reports of every module (or one), newest first: module, name, file, url, created, size, type."""
    modules = app.registry.modules
    if module is not None:
        if module not in modules:
            raise UnknownName("module", module)
        modules = [module]
    reports = []
    for name in modules:
        fs = app.services.fs(name)
        for entry in fs.listdir(REPORTS_FOLDER):
            filename = f"{REPORTS_FOLDER}/{entry}"
            if entry.startswith("."):
                continue
            info = fs.info(filename)
            if info is None:  # swept meanwhile, or a folder
                continue
            reports.append(
                {
                    "module": name,
                    "name": entry,
                    "file": filename,
                    "url": fs.get_url(filename),
                    "created": datetime.fromtimestamp(info.mtime, UTC).isoformat(timespec="seconds"),
                    "size": info.size,
                    "type": mimetypes.guess_type(entry)[0] or "application/octet-stream",
                }
            )
    return sorted(reports, key=lambda r: (r["created"], r["name"]), reverse=True)


class SteadyRedBeatScheduler(RedBeatScheduler):
    """Celery beat's scheduler (``beat_scheduler``): RedBeat, riding out a Redis outage.

    RedBeat stops beat when extending its lock fails (Redis unreachable, or the lock expired
    meanwhile and is another beat's). This one stands by instead: it sends nothing while it does
    not hold the lock, and takes the lock again as soon as Redis answers and the lock is free, so
    a host cut off for a while rejoins without a supervisor restarting its beat.
    """

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Send what is due while holding the lock; else try to take it. Returns seconds to sleep."""
        held = getattr(self, "lock", None)  # RedBeat's lock (a redis-py Lock), None until taken
        if self.lock_key and held is None and not self._take_lock():
            return float(self.max_interval)  # a standby: another beat holds the lock, or Redis is away
        try:
            return float(super().tick(*args, **kwargs))
        except (RedisConnectionError, RedisTimeoutError, LockError) as exc:
            log.warning("beat: %s; standing by until Redis answers and the lock is free again", exc)
            self.lock = None
            return float(self.max_interval)

    def _take_lock(self) -> bool:
        """Take RedBeat's lock without waiting (``redbeat.schedulers.acquire_distributed_beat_lock`` waits)."""
        try:
            client = get_redis(self.app)
            lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
            lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
            if not lock.acquire(blocking=False):
                return False
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.debug("beat: Redis is unreachable (%s); standing by", exc)
            return False
        log.info("beat: took the lock again")
        self.lock = lock
        return True
