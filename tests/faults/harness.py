"""Fault-test harness: an isolated deployment of real processes under a steady event load.

A ``Deployment`` has its own Redis (AOF ``everysec``, as the README recommends), its own
databases (a unique ``mongo_db_prefix``; optionally its own nx-27017 server, to restart
it), its own data folder, a real gunicorn web process on a free port (so it can be
killed), and the test suite's ``Pipeline`` (a prefork worker, two solo shard workers,
the batcher). A ``Load`` generator POSTs small batches of events over real HTTP at a
steady rate from a few sender threads, resending on connection errors and 5xx with
backoff (as an LMS sender does), and records which events were acknowledged with 202.

After a fault is healed, ``Deployment.settle`` waits (bounded) until the pipeline is
quiescent and every acknowledged event has reached the idempotent ``count_deliveries``
handler (tests/sample_modules/pipeline), and ``Deployment.tally`` counts its results:
one document per event id, ``deliveries`` = how often the handler was given it.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import pkgutil
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
import redis

from config.processes import Commands
from config.queues import shard_queues
from config.settings import ROOT, Settings
from tasks.app import Insights, create_insights
from tasks.authoring.event_ids import event_id
from tasks.ops.cli import process_commands
from tasks.ops.embedded import HOST, EmbeddedMongo, EmbeddedRedis, free_port
from tasks.pipeline.stream import GROUP
from tasks.storage.mongo import database_name
from tests.conftest import Pipeline, start_process, stop_process

REPORT = ROOT / "var" / "faults.md"
KEEP = "pipeline"  # the one analytics module these deployments load (see excluded_modules)


def excluded_modules(keep: str = KEEP) -> tuple[str, ...]:
    """Every analytics module but ``keep`` (``pipeline``): fewer tasks per batch on a small machine,
    and no dependency on modules other people are editing. The pipeline under test is the same."""
    import modules
    import tests.sample_modules

    names = {
        info.name
        for package in (modules, tests.sample_modules)
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_")
    }
    return tuple(sorted(names - {keep}))


# ----------------------------------------------------------------------------- web process
class Web:
    """``gunicorn web.wsgi:app`` in its own process group: the ``tasks/ops/cli.py process_commands``
    web line unless given another ``command`` (a ``config/processes.py`` ``Commands.web`` line),
    started in ``cwd`` through ``launcher`` with ``env`` added (see ``tests.conftest.start_process``)."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        command: list[str] | None = None,
        *,
        cwd: Path = ROOT,
        launcher: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.command = command or process_commands(settings, Commands(graceful_timeout=5))["web"]
        self.cwd = cwd
        self.launcher = tuple(launcher)
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the web app."""
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    @property
    def pid(self) -> int:
        """The gunicorn master's process id."""
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> Web:
        """Start gunicorn and wait until it answers HTTP."""
        return self.launch().wait_serving(timeout)

    def launch(self) -> Web:
        """Start gunicorn, not waiting for it."""
        self.process = start_process(
            self.settings, self.command, self.log_path, cwd=self.cwd, launcher=self.launcher, env=self.env
        )
        return self

    def wait_serving(self, timeout: float = 30.0) -> Web:
        """Wait until the started gunicorn answers HTTP; RuntimeError (with its log) if it exits or does not."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self.serving():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the web process did not start; log:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def serving(self) -> bool:
        """Whether the web app answers HTTP (any status)."""
        connection = http.client.HTTPConnection(self.settings.web_host, self.settings.web_port, timeout=2)
        try:
            connection.request("GET", "/receipt/0-0")
            connection.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            connection.close()

    def alive(self) -> bool:
        """Whether the gunicorn master still runs."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the master and its workers (the whole process group), no warning."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """Stop gunicorn (SIGTERM: graceful), forcefully if it lingers."""
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process)


# ------------------------------------------------------------------------------ load
@dataclass
class Sent:
    """One batch of events as its sender saw it."""

    ids: list[str]
    acknowledged: bool = False
    attempts: int = 0


@dataclass
class Load:
    """Sender threads POSTing ``batch``-event requests at ``rate`` events/s in total.

    A request is resent (same events) after a connection error, a timeout or a 5xx/429,
    with jittered exponential backoff, until it is answered 202 or ``give_up`` seconds
    after the load was stopped. ``statuses`` counts every answer (``"error"``: no answer).

    With ``others`` (the web URLs of other hosts), requests go round-robin over ``url`` and
    them, and a request that failed is resent to the next one, as an LMS sender behind a load
    balancer would: a URL that failed is left out for ``rest`` seconds (unless all are).
    ``make_events`` (override it) builds the events of one request.
    """

    url: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex)
    rate: float = 600.0
    batch: int = 20
    senders: int = 3
    timeout: float = 5.0
    give_up: float = 45.0
    others: tuple[str, ...] = ()
    rest: float = 2.0
    batches: list[Sent] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _deadline: float = float("inf")
    _resting: dict[str, float] = field(default_factory=dict)

    @property
    def urls(self) -> tuple[str, ...]:
        """Every web URL the load is sent to."""
        return (self.url, *self.others)

    def start(self) -> Load:
        """Start sending."""
        for k in range(self.senders):
            thread = threading.Thread(target=self._send_loop, args=(k,), name=f"load-{k}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop making new batches; wait until every batch in flight is acknowledged or given up."""
        self._deadline = time.monotonic() + self.give_up
        self._stop.set()
        for thread in self._threads:
            thread.join(self.give_up + self.timeout + 5)

    def acknowledged(self) -> set[str]:
        """Ids of the events answered 202."""
        with self._lock:
            return {i for sent in self.batches if sent.acknowledged for i in sent.ids}

    def sent(self) -> set[str]:
        """Ids of every event generated (acknowledged or not)."""
        with self._lock:
            return {i for sent in self.batches for i in sent.ids}

    def wait_acknowledged(self, more_than: int, timeout: float = 30.0) -> None:
        """Block until more than ``more_than`` events were acknowledged (the load is flowing)."""
        deadline = time.monotonic() + timeout
        while len(self.acknowledged()) <= more_than:
            if time.monotonic() > deadline:
                raise AssertionError(f"the load is not flowing: statuses {dict(self.statuses)}")
            time.sleep(0.05)

    def make_events(self, sender: int, serial: int) -> list[dict[str, Any]]:
        """The events of the next request of sender thread ``sender``, numbered from ``serial``.

        Each has an id of its own: a request resent after a timeout must not count its events twice."""
        numbers = [f"{sender}-{serial + i}" for i in range(self.batch)]
        return [{"id": f"{self.run}-{n}", "run": self.run, "n": n, "sender": sender} for n in numbers]

    def _send_loop(self, k: int) -> None:
        interval = self.batch * self.senders / self.rate
        due = time.monotonic() + random.uniform(0, interval)
        serial = 0
        turn = k  # the senders start on different URLs
        while not self._stop.is_set():
            now = time.monotonic()
            if due > now:
                self._stop.wait(due - now)
                continue
            due = max(due + interval, now - 1.0)  # steady: no burst beyond a second of backlog
            events = self.make_events(k, serial)
            serial += self.batch
            sent = Sent([event_id(e) for e in events])
            with self._lock:
                self.batches.append(sent)
            turn = self._deliver(json.dumps(events).encode(), sent, turn)

    def _deliver(self, body: bytes, sent: Sent, turn: int) -> int:
        """Send until acknowledged (or given up); returns the turn of the next request."""
        delay = 0.05
        while True:
            url, turn = self._pick(turn)
            sent.attempts += 1
            status = self._post(url, body)
            with self._lock:
                self.statuses[status] += 1
            if status == "202":
                sent.acknowledged = True
                return turn
            if status != "error" and not status.startswith("5") and status != "429":
                with self._lock:
                    self.refused.append(status)  # a 4xx: resending cannot help (never expected here)
                return turn
            if len(self.urls) > 1:
                with self._lock:
                    self._resting[url] = time.monotonic() + self.rest
            if time.monotonic() > self._deadline:
                return turn
            time.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, 1.0)

    def _pick(self, turn: int) -> tuple[str, int]:
        """The URL for this attempt (the next one not resting) and the turn after it."""
        urls = self.urls
        now = time.monotonic()
        with self._lock:
            for step in range(len(urls)):
                url = urls[(turn + step) % len(urls)]
                if self._resting.get(url, 0.0) <= now:
                    return url, turn + step + 1
        return urls[turn % len(urls)], turn + 1

    def _post(self, url: str, body: bytes) -> str:
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        try:
            connection.request("POST", "/event", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            return str(response.status)
        except (OSError, http.client.HTTPException):
            return "error"
        finally:
            connection.close()


# ------------------------------------------------------------------------------ deployment
@dataclass
class Tally:
    """What the handler's results say about a load's events."""

    sent: int
    acknowledged: int
    handled: int
    lost: int
    duplicated: int  # ids the handler was given more than once (counted once in its results)
    extra: int  # handled though never acknowledged (its 202 was lost, e.g. with the web process)
    unknown: int  # handled ids the load never generated (must be 0)
    lost_ids: list[str]


@dataclass
class Watch:
    """What a test sees of a deployment's pipeline through its Redis and databases, whichever
    processes (and hosts) run it: ``module``'s handler keeps one document per event id in its
    ``deliveries`` collection, with the load's ``run`` and ``deliveries`` (how often it was given it)."""

    settings: Settings
    app: Insights
    logs: Path
    module: str = KEEP

    def workers_answering(self, expected: int, timeout: float = 30.0) -> int:
        """How many workers answer a ping, asking again (bounded) until ``expected`` do.

        The first ping after a Redis restart may fail on this process's own stale
        connection; workers reconnect with backoff (2, 4, 6 s ...) after an outage."""
        deadline = time.monotonic() + timeout
        answering = 0
        while True:
            try:
                answering = len(self.app.celery.control.ping(timeout=1.0))
            except Exception:  # kombu's connection errors: the client reconnects on the next call
                answering = 0
            if answering >= expected or time.monotonic() > deadline:
                return answering
            time.sleep(0.5)

    def receipts_not_done(self) -> int:
        """Receipts (202 answers) whose batches are not all recorded as done: ``GET /receipt``
        would say ``pending`` although the handlers ran (a chord whose body never ran)."""
        client = self.app.services.redis
        receipts = [key.decode().rsplit(":", 1)[1] for key in client.scan_iter(self.app.keys.receipt("*"), count=1000)]
        return sum(1 for receipt in receipts if self.app.store.receipt(receipt)["state"] != "done")

    # ---- results
    def deliveries(self, run: str) -> dict[str, int]:
        """Per event id of a run: how often the handler was given it."""
        collection = self._collection()
        return {doc["_id"]: doc["deliveries"] for doc in collection.find({"run": run}, {"deliveries": 1})}

    def _collection(self) -> Any:
        client: pymongo.MongoClient[dict[str, Any]] = self.app.services.mongo
        return client[database_name(self.settings.mongo_db_prefix, self.module)]["deliveries"]

    def quiescent(self) -> bool:
        """Nothing left anywhere: intake stream and its pending list, task queues, unacked tasks."""
        client = self.app.services.redis
        queues = [*self.settings.queues.all(), *shard_queues(self.settings.queues, self.settings.shards)]
        try:
            pipe = client.pipeline()
            pipe.xlen(self.app.intake.stream)
            pipe.xpending(self.app.intake.stream, GROUP)
            for queue in queues:
                pipe.llen(queue)
            pipe.hlen("unacked")
            backlog, pending, *lengths = pipe.execute()
        except redis.RedisError:
            return False
        return backlog == 0 and pending["pending"] == 0 and not any(lengths)

    def settle(self, load: Load, timeout: float = 90.0, stable: float = 3.0) -> float:
        """Wait until the pipeline is quiescent, its results have not changed for ``stable``
        seconds, and every acknowledged event was handled (or some are dead letters, for the
        test to look at); returns the seconds waited. Raises AssertionError on timeout."""
        wanted = load.acknowledged()
        start = time.monotonic()
        deadline = start + timeout
        last: tuple[int, int] | None = None
        since = start
        while True:
            try:
                counts = self.deliveries(load.run)
            except pymongo.errors.PyMongoError:
                counts = {}
            signature = (len(counts), sum(counts.values()))
            now = time.monotonic()
            if signature != last:
                last, since = signature, now
            settled = now - since >= stable and self.quiescent()
            if settled and (wanted <= counts.keys() or self.dead_letters()):
                return now - start
            if now > deadline:
                missing = len(wanted - counts.keys())
                raise AssertionError(
                    f"after {timeout:g} s {missing} acknowledged events are still not handled "
                    f"(quiescent: {self.quiescent()}); logs in {self.logs}"
                )
            time.sleep(0.25)

    def dead_letters(self) -> int:
        """How many dead letters (failed handler batches) the deployment holds."""
        try:
            return self.app.dead_letters.count()
        except redis.RedisError:
            return 0

    def retry_dead_letters(self) -> str:
        """Run ``python -m tasks deadletters retry`` as an operator would; returns its output."""
        result = subprocess.run(
            [sys.executable, "-m", "tasks", "deadletters", "retry"],
            cwd=ROOT,
            env={**os.environ, **self.settings.to_env()},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout.strip()

    def tally(self, load: Load) -> Tally:
        """Count the load's events in the handler's results."""
        counts = self.deliveries(load.run)
        sent, acknowledged, present = load.sent(), load.acknowledged(), set(counts)
        lost = acknowledged - present
        return Tally(
            sent=len(sent),
            acknowledged=len(acknowledged),
            handled=len(acknowledged & present),
            lost=len(lost),
            duplicated=sum(1 for n in counts.values() if n > 1),
            extra=len((present - acknowledged) & sent),
            unknown=len(present - sent),
            lost_ids=sorted(lost)[:10],
        )


@dataclass(kw_only=True)
class Deployment(Watch):
    """One isolated deployment: its servers, processes and application object."""

    redis_server: EmbeddedRedis
    mongo_server: EmbeddedMongo | None
    web: Web
    pipeline: Pipeline

    # ---- processes
    def pids(self) -> dict[str, int]:
        """Process ids of the web master, the batcher and each worker."""
        assert self.pipeline.batcher is not None
        pids = {"web": self.web.pid, "batcher": self.pipeline.batcher.pid}
        pids.update({f"worker{i}": w.pid for i, w in enumerate(self.pipeline.workers)})
        return pids

    def alive(self) -> dict[str, bool]:
        """Which of web, batcher and workers still run."""
        assert self.pipeline.batcher is not None
        state = {"web": self.web.alive(), "batcher": self.pipeline.batcher.poll() is None}
        state.update({f"worker{i}": w.poll() is None for i, w in enumerate(self.pipeline.workers)})
        return state


@contextmanager
def deployment(base: Settings, tmp_path: Path, own_mongo: bool = False, **overrides: Any) -> Iterator[Deployment]:
    """Start an isolated deployment (see the module docstring); stop everything on exit."""
    logs = tmp_path / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with EmbeddedRedis(tmp_path / "redis", persist=True) as redis_server:
        mongo_server = EmbeddedMongo(tmp_path / "mongo").start() if own_mongo else None
        try:
            settings = dataclasses.replace(
                base,
                redis_url=redis_server.url,
                mongo_url=mongo_server.url if mongo_server else base.mongo_url,
                mongo_db_prefix=f"fault{uuid.uuid4().hex[:8]}_",
                data_dir=tmp_path / "data",
                fs_root=tmp_path / "data" / "files",
                exclude_modules=excluded_modules(),
                web_host=HOST,
                web_port=free_port(),
                **overrides,
            )
            app = create_insights(settings)
            web = Web(settings, logs / "web.log")
            pipeline = Pipeline(app, logs)
            try:
                pipeline.start()
                web.start()
                yield Deployment(
                    settings=settings, app=app, logs=logs, redis_server=redis_server,
                    mongo_server=mongo_server, web=web, pipeline=pipeline,
                )  # fmt: skip
            finally:
                web.stop()
                pipeline.stop()
                app.services.close()
        finally:
            if mongo_server is not None:
                mongo_server.stop()


# ------------------------------------------------------------------------------ report
HEADER = (
    "| fault | sent | acknowledged | handled | lost | duplicated (redelivered, counted once) "
    "| extra (202 lost, resent) | receipts not done | requests: answers | recovery | seconds |"
)


def row(fault: str, tally: Tally, load: Load, pending: int, recovery: str, seconds: float) -> str:
    """One Markdown table row for a fault."""
    answers = ", ".join(f"{status}: {n}" for status, n in sorted(load.statuses.items()))
    return (
        f"| {fault} | {tally.sent} | {tally.acknowledged} | {tally.handled} | {tally.lost} | {tally.duplicated} "
        f"| {tally.extra} | {pending} | {answers} | {recovery} | {seconds:.1f} |"
    )


def write_report(rows: list[str], path: Path = REPORT) -> str:
    """Write the table (with a header saying when and where) to ``path``; returns it."""
    lines = [
        "# Fault tests (tests/faults)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.cpu_count()} CPUs; "
        "steady HTTP load, one fault each while events are in flight. "
        "handled/lost count acknowledged (202) events in the idempotent `count_deliveries` results; "
        "duplicated = ids the handler was given more than once (one document each: counted once).",
        "",
        HEADER,
        "|" + "---|" * (HEADER.count("|") - 1),
        *rows,
        "",
    ]
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
