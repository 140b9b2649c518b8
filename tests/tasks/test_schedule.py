"""``@cron``: validation, binding and routing, reports, and real beat processes firing jobs once."""

from __future__ import annotations

import dataclasses
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from celery.schedules import crontab, schedule
from flask.testing import FlaskClient
from matplotlib.figure import Figure

from config.beat import SWEEP_TASK
from config.celery import celery_config
from config.settings import Settings
from tasks import cron, memoize_query, query
from tasks.app import Insights
from tasks.authoring.decorators import declarations_of
from tasks.core.registry import Registry, Spec
from tasks.errors import RegistrationError
from tasks.ops.embedded import EmbeddedRedis
from tasks.schedule import DEFAULT_KEEP, REPORTS_FOLDER, celery_schedule, write_report
from tasks.storage.fs import FileStore
from tests.conftest import COMMANDS, Pipeline, start_process, stop_process, wait_for
from tests.sample_modules import scheduled

PNG = b"\x89PNG\r\n\x1a\n"


def cron_options(func: Any) -> dict[str, Any]:
    [declaration] = [d for d in declarations_of(func) if d.kind == "cron"]
    return declaration.options


# Decoration -------------------------------------------------------------------------------
def test_run_every_takes_seconds_a_timedelta_or_a_crontab_string() -> None:
    @cron(run_every=30)
    def every_30s() -> None: ...

    @cron(run_every=timedelta(minutes=5))
    def every_5m() -> None: ...

    @cron(run_every="*/15 2-4 * * mon-fri")
    def quarter_hours() -> None: ...

    @cron(run_every="@hourly")
    def hourly() -> None: ...

    assert cron_options(every_30s)["run_every"] == 30.0
    assert cron_options(every_5m)["run_every"] == 300.0
    assert cron_options(quarter_hours)["run_every"] == "*/15 2-4 * * mon-fri"
    assert cron_options(hourly)["run_every"] == "0 * * * *"
    assert celery_schedule(30.0).run_every == timedelta(seconds=30)
    assert isinstance(celery_schedule(30.0), schedule)
    every = celery_schedule("*/15 2-4 * * mon-fri")
    assert isinstance(every, crontab) and every.minute == {0, 15, 30, 45} and every.hour == {2, 3, 4}
    assert cron_options(every_30s) == {"run_every": 30.0, "params": [{}], "force_memoize": False, "keep": DEFAULT_KEEP}


@pytest.mark.parametrize(
    ("run_every", "reason"),
    [
        ("61 * * * *", "bad minute field '61'"),
        ("* 25 * * *", "bad hour field '25'"),
        ("* * * * funday", "bad day-of-week field 'funday'"),
        ("* * *", "needs 5 fields"),
        ("every day", "needs 5 fields"),
        (0, "more than 0 seconds"),
        (-5, "more than 0 seconds"),
        (float("inf"), "more than 0 seconds"),
        (timedelta(0), "more than 0 seconds"),
        (True, "a timedelta, a number of seconds or a crontab string"),
        (None, "a timedelta, a number of seconds or a crontab string"),
    ],
)
def test_a_bad_schedule_is_refused_at_decoration_time_with_the_reason(run_every: Any, reason: str) -> None:
    with pytest.raises(RegistrationError, match=reason):
        cron(run_every=run_every)


def test_a_bare_cron_asks_for_a_schedule() -> None:
    with pytest.raises(RegistrationError, match=r"@cron\(run_every=...\)"):

        @cron  # type: ignore[arg-type]
        def oops() -> None: ...


def test_params_give_the_arguments_of_each_run() -> None:
    @cron(run_every=60, params={"course": "c1"})
    def one(course: str) -> None: ...

    @cron(run_every=60, params=[{"course": "c1"}, {"course": "c2", "extra": 1}])
    def several(course: str, params: dict[str, Any]) -> None: ...

    assert cron_options(one)["params"] == [{"course": "c1"}]
    assert cron_options(several)["params"] == [{"course": "c1"}, {"course": "c2", "extra": 1}]
    with pytest.raises(RegistrationError, match=r"missing argument 'course'.*params="):

        @cron(run_every=60, params=[{"course": "c1"}, {}])
        def missing(course: str) -> None: ...

    with pytest.raises(RegistrationError, match="unexpected argument 'user'"):

        @cron(run_every=60, params={"user": "u"})
        def unexpected(course: str = "all") -> None: ...

    for bad in ([], "course=c1", [{"course": "c1"}, 3], {"_memo": "refresh"}):
        with pytest.raises(RegistrationError, match=r"params|_memo"):
            cron(run_every=60, params=bad)  # type: ignore[arg-type]
    for option, value in (("keep", 0), ("keep", "week"), ("force_memoize", "yes"), ("queue", "no spaces")):
        with pytest.raises(RegistrationError, match=option):
            cron(run_every=60, **{option: value})


def test_the_decorated_function_stays_a_plain_callable_and_stacks_with_query() -> None:
    @cron(run_every=60, params=[{"n": 1}])
    @memoize_query()
    @query(name="squared")
    def square(n: int) -> int:
        return n * n

    assert square(7) == 49
    assert [d.kind for d in declarations_of(square)] == ["query", "cron"]
    assert scheduled.cron_square(4)["square"] == 16  # the sample module's job, called directly
    assert scheduled.tick.__name__ == "tick" and callable(scheduled.tick)
    with pytest.raises(RegistrationError, match="two schedules"):
        cron(run_every=5)(square)


def test_a_job_is_registered_per_module_and_function_on_the_reports_queue(insights: Insights) -> None:
    spec = insights.registry.get("cron", "cron.scheduled.tick")
    assert (spec.task_name, spec.module, spec.label) == ("cron.scheduled.tick", "scheduled", "scheduled job 'tick'")
    assert insights.queue_of(spec) == "reports"
    routes = insights.celery.amqp.router
    for task in ("cron.scheduled.tick", "cron.scheduled.cron_square", SWEEP_TASK):
        assert task in insights.celery.tasks
        assert routes.route({}, task, (), {})["queue"].name == "reports"
    beat = insights.celery.conf.beat_schedule
    assert beat["cron.scheduled.tick"]["schedule"].run_every == timedelta(seconds=1)
    assert beat["cron.scheduled.nightly_table"]["schedule"].hour == {3}
    assert beat[SWEEP_TASK]["schedule"] == timedelta(seconds=insights.settings.sweep_interval)
    assert insights.celery.conf.beat_scheduler == "tasks.schedule:SteadyRedBeatScheduler"
    assert insights.celery.conf.redbeat_redis_url == insights.settings.redis


def test_queue_option_and_force_memoize_on_an_unmemoized_function(settings: Settings) -> None:
    @cron(run_every=60, queue="slow")
    def slow_job() -> None: ...

    @cron(run_every=60, force_memoize=True)
    def not_memoized() -> None: ...

    registry = Registry()
    registry.add(Spec("cron", ("slow_job",), slow_job, "m", "slow", False, cron_options(slow_job)))
    app = Insights(settings, registry).finalize()
    assert app.celery.amqp.router.route({}, "cron.m.slow_job", (), {})["queue"].name == "slow"
    registry = Registry()
    registry.add(Spec("cron", ("not_memoized",), not_memoized, "m", None, False, cron_options(not_memoized)))
    with pytest.raises(RegistrationError, match=r"force_memoize=True.*not memoized"):
        Insights(settings, registry).finalize()


def test_beat_settings_follow_the_lock_timeout(settings: Settings) -> None:
    config = celery_config(dataclasses.replace(settings, beat_lock_timeout=5))
    assert (config["redbeat_lock_timeout"], config["beat_max_loop_interval"]) == (5, 1.0)
    config = celery_config(settings)
    assert (config["redbeat_lock_timeout"], config["beat_max_loop_interval"]) == (60, 12.0)


# Reports ----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["gridfs", "local"])
def test_results_become_report_files_by_type_with_an_expiry(insights: Insights, backend: str) -> None:
    module = f"unit{uuid.uuid4().hex[:8]}"
    fs = FileStore(insights.services.fs_backend(module, backend), module, "/fs", insights.services.redis, insights.keys)
    frame = pd.DataFrame({"user": ["a", "b"], "n": [1, 2]})
    figure = Figure(figsize=(1, 1))
    figure.add_subplot().plot([0, 1])
    written = {
        "html": write_report(fs, "page", "  <html><p>hi</p></html>", 30),
        "text": write_report(fs, "text", "user,n\na,1\n", 30),
        "bytes": write_report(fs, "raw", b"user,n\na,1\n", 30),
        "frame": write_report(fs, "frame", frame, 30),
        "indexed": write_report(fs, "indexed", frame.set_index("user"), 30),
        "figure": write_report(fs, "figure", figure, 30),
        "png": write_report(fs, "png", PNG + b"rest", 30),
    }
    assert all(name and name.startswith(f"{REPORTS_FOLDER}/") for name in written.values())
    assert [Path(str(n)).suffix for n in written.values()] == [".html", ".csv", ".csv", ".csv", ".csv", ".png", ".png"]
    assert fs.open(str(written["frame"])).read() == "user,n\na,1\nb,2\n"
    assert fs.open(str(written["indexed"])).read() == "user,n\na,1\nb,2\n"
    assert fs.open(str(written["figure"]), "rb").read().startswith(PNG)
    for nothing in (None, "", b"", {"n": 1}, [1, 2], 3):
        assert write_report(fs, "nothing", nothing, 30) is None
    assert sorted(fs.listdir(REPORTS_FOLDER)) == sorted(Path(str(n)).name for n in written.values())  # no leftovers
    assert not fs.sweep(time.time() + 29)
    assert sorted(fs.sweep(time.time() + 31)) == sorted(written.values())
    assert fs.listdir(REPORTS_FOLDER) == []


def http_get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers.get_content_type(), response.read()


def send(insights: Insights, task: str) -> Any:
    return insights.celery.send_task(task).get(timeout=30)


def test_jobs_run_on_the_worker_and_their_reports_are_listed_and_served(
    insights: Insights, worker: Pipeline, live_server: str, client: FlaskClient
) -> None:
    csv = send(insights, "cron.scheduled.nightly_table")
    png = send(insights, "cron.scheduled.cron_chart")
    assert csv["runs"] == png["runs"] == 1
    [csv_file], [png_file] = csv["reports"], png["reports"]
    assert csv_file.startswith("reports/nightly_table-") and png_file.startswith("reports/cron_chart-")

    listed = {r["file"]: r for r in insights.reports("scheduled")}
    assert {csv_file, png_file} <= set(listed)
    entry = listed[csv_file]
    assert entry["module"] == "scheduled" and entry["name"] == csv_file.split("/")[1]
    assert entry["url"] == f"/fs/scheduled/{csv_file}" and entry["type"] == "text/csv"
    assert entry["size"] == len(b"user,events\nalice,3\nbob,5\n") and entry["created"].endswith("+00:00")
    assert insights.reports() and all(r["module"] in insights.registry.modules for r in insights.reports())

    assert http_get(live_server + entry["url"]) == ("application/octet-stream", b"user,events\nalice,3\nbob,5\n")
    download = client.get(entry["url"]).headers["Content-Disposition"]
    assert download == f"attachment; filename={entry['name']}"  # a report is downloaded, a PNG shown
    kind, body = http_get(live_server + listed[png_file]["url"])
    assert kind == "image/png" and body.startswith(PNG)

    page = client.get("/reports")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert listed[png_file]["url"] in page.get_data(as_text=True)
    assert 'href="/reports"' in client.get("/").get_data(as_text=True)  # linked from the header
    data = client.get("/reports?f=json&module=scheduled").get_json()
    assert {csv_file, png_file} <= {r["file"] for r in data}
    assert client.get("/reports?module=nope").status_code == 404


def test_force_memoize_refreshes_the_cache_of_each_params_run(insights: Insights, worker: Pipeline) -> None:
    spec = insights.registry.get("query", "cron_square")
    first = send(insights, "cron.scheduled.cron_square")
    assert first == {"runs": 2, "reports": []}  # data, not a report
    cached = {n: insights.cached_result(spec, {"n": n}) for n in (2, 3)}
    assert cached[2][0] and cached[2][1]["square"] == 4 and cached[3][1]["square"] == 9
    send(insights, "cron.scheduled.cron_square")
    refreshed = insights.cached_result(spec, {"n": 2})[1]
    assert refreshed["at"] > cached[2][1]["at"]  # recomputed, although the cache was warm


def test_the_sweeper_task_removes_expired_files_of_every_module(insights: Insights, worker: Pipeline) -> None:
    fs = insights.services.fs("scheduled")
    with fs.open("sweep/old.txt", "w") as f:
        f.write("old")
    with fs.open("sweep/live.txt", "w") as f:
        f.write("live")
    fs.expire("sweep/old.txt", 0.05)
    fs.expire("sweep/live.txt", 600)
    wait_for(lambda: fs.expired("sweep/old.txt"), what="the file to expire")
    assert send(insights, SWEEP_TASK) >= 1
    assert not fs.exists("sweep/old.txt") and fs.backend.info("sweep/old.txt") is None  # gone from the store
    assert fs.exists("sweep/live.txt")
    fs.remove("sweep", recursive=True)


# Real beat processes --------------------------------------------------------------------------
BEAT_LOCK_TIMEOUT = 5  # beat then extends its lock, and a waiting beat retries, every second


@contextmanager
def beats(settings: Settings, logs: Path, count: int = 1) -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    """Start ``count`` beat processes against the deployment; stop every one of them afterwards."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for _ in range(count):
            log = logs / f"beat-{time.monotonic_ns()}.log"
            started.append((start_process(settings, COMMANDS.beat(), log), log))
        yield started
    finally:
        for process, _ in started:
            if process.poll() is None:
                stop_process(process)


def runs_since(insights: Insights, since: float) -> list[float]:
    """When ``scheduled.tick`` ran since ``since`` (by worker clock, sorted)."""
    ticks = insights.services.mongodb("scheduled")["ticks"].find({"t": {"$gte": since}})
    return sorted(doc["t"] for doc in ticks)


def sent(log: Path, task: str = "cron.scheduled.tick") -> int:
    """How many times a beat's log says it sent ``task``."""
    return log.read_text(errors="replace").count(f"Sending due task {task} ")


@pytest.mark.slow
def test_beat_fires_a_job_every_second_its_report_is_served_and_the_sweeper_runs(
    insights: Insights, worker: Pipeline, live_server: str, tmp_path: Path
) -> None:
    beat_settings = dataclasses.replace(insights.settings, beat_lock_timeout=BEAT_LOCK_TIMEOUT, sweep_interval=1)
    # The worker claims each sweep's period by its own INSIGHTS_SWEEP_INTERVAL (the default): a sweep an
    # earlier test ran has claimed this one, so the claims go (tasks/storage/once.py).
    client = insights.services.redis
    for claim in client.scan_iter(insights.keys.once(SWEEP_TASK, 0).removesuffix("0") + "*"):
        client.delete(claim)
    fs = insights.services.fs("scheduled")
    with fs.open("sweep/expiring.txt", "w") as f:
        f.write("soon gone")
    fs.expire("sweep/expiring.txt", 2)
    start = time.time()
    with beats(beat_settings, tmp_path) as [(beat, log)]:
        wait_for(lambda: len(runs_since(insights, start)) >= 2 or beat.poll() is not None, timeout=30, what="2 runs")
        assert beat.poll() is None, log.read_text()[-3000:]

        def tick_report() -> dict[str, Any] | None:
            reports = [r for r in insights.reports("scheduled") if r["name"].startswith("tick-")]
            fresh = [r for r in reports if (info := fs.info(r["file"])) is not None and info.mtime >= start]
            return fresh[0] if fresh else None

        report = wait_for(tick_report, what="a tick report")
        kind, body = http_get(live_server + report["url"])
        assert kind == "application/octet-stream" and body.startswith(b"<html><body><p>tick at ")  # a download
        # The sweeper runs on beat too (every second here): the expired file goes without anyone asking.
        wait_for(lambda: fs.backend.info("sweep/expiring.txt") is None, timeout=20, what="the sweeper to run")
        assert sent(log, SWEEP_TASK) >= 1
    assert beat.returncode == 0  # SIGTERM: a clean exit (stop_process would have had to SIGKILL it otherwise)
    fs.remove("sweep", recursive=True)


@pytest.mark.slow
def test_two_beats_started_by_mistake_fire_each_run_once_and_the_second_takes_over(
    insights: Insights, worker: Pipeline, tmp_path: Path
) -> None:
    beat_settings = dataclasses.replace(insights.settings, beat_lock_timeout=BEAT_LOCK_TIMEOUT)
    start = time.time()
    with beats(beat_settings, tmp_path, count=2) as started:
        # Exactly one beat holds the lock and sends jobs; the other waits on the lock.
        wait_for(lambda: len(runs_since(insights, start)) >= 8, timeout=60, what="8 runs")
        assert all(process.poll() is None for process, _ in started)
        holders = [(p, log) for p, log in started if "Acquired lock" in log.read_text()]
        assert len(holders) == 1, [log.read_text()[-2000:] for _, log in started]
        [(holder, holder_log)] = holders
        [waiter_log] = [log for p, log in started if p is not holder]
        assert sent(holder_log) >= 7 and sent(waiter_log) == 0
        runs = runs_since(insights, start)
        span = runs[-1] - runs[0]
        assert len(runs) <= span + 2, f"{len(runs)} runs in {span:.1f} s: doubled"  # doubling gives ~2 per second
        assert len(runs) <= sent(holder_log) + 1

        # When the holder stops (releasing the lock), the waiting beat takes over within a few seconds.
        stop_process(holder)
        handover = time.time()
        wait_for(lambda: "Acquired lock" in waiter_log.read_text(), timeout=30, what="the second beat to take over")
        wait_for(lambda: len(runs_since(insights, handover)) >= 2, timeout=30, what="runs after the handover")
        assert sent(waiter_log) >= 2
        after = runs_since(insights, handover)
        assert len(after) <= (after[-1] - after[0]) + 2


@pytest.mark.slow
def test_a_beat_that_lost_redis_stands_by_and_takes_the_lock_again_instead_of_exiting(
    settings: Settings, tmp_path: Path
) -> None:
    own_redis = EmbeddedRedis(tmp_path / "redis").start()  # appendonly: the schedule survives the restart
    beat_settings = dataclasses.replace(
        settings, redis_url=own_redis.url, beat_lock_timeout=BEAT_LOCK_TIMEOUT, mongo_db_prefix="steady-beat"
    )
    try:
        with beats(beat_settings, tmp_path) as [(beat, log)]:
            wait_for(lambda: sent(log) >= 2 or beat.poll() is not None, timeout=30, what="2 runs sent")
            own_redis.stop()
            time.sleep(BEAT_LOCK_TIMEOUT + 2)  # Redis away longer than the lock lives: RedBeat's extend fails
            assert beat.poll() is None, log.read_text()[-3000:]
            before = sent(log)
            own_redis.start()  # same port, same data; the lock has expired meanwhile
            wait_for(lambda: sent(log) > before or beat.poll() is not None, timeout=30, what="runs after Redis is back")
            assert beat.poll() is None, log.read_text()[-3000:]
            assert "took the lock again" in log.read_text()
    finally:
        own_redis.stop()
