"""Multi-host harness: two "hosts" of real processes sharing one Redis and one nx-27017 server.

A ``Host`` is a full set of the processes ``bin/insights run`` starts (``tasks/ops/cli.py
process_commands``: web, batcher, worker, the shard worker consuming every shard queue, beat),
with its own working directory, its own ``INSIGHTS_DATA_DIR`` and its own host name (the ``%h``
of Celery node names). Where the machine allows it (root, ``ip netns``), each host lives in
a network namespace of its own, joined to the root namespace by a veth pair on a bridge; the
shared servers listen on the bridge's address, so ``Network.cut`` takes one host off the
network (``ip link set ... down``) while its processes keep running.

The load, the settling and the counting come from the fault harness (tests/faults/harness.py):
an ``OrderedLoad`` adds a user and a per-user sequence number to each event, and the opt-in
``multihost`` sample module (tests/sample_modules/multihost) records, per event id, how often
and by which process it was handled, and per user the order it saw.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo
import redis

from config.processes import Commands
from config.settings import ROOT, Settings
from tasks.app import Insights
from tasks.ops.cli import process_commands
from tasks.pipeline.shards import shard_of
from tasks.pipeline.stream import GROUP
from tasks.storage.keys import Keys
from tasks.storage.mongo import database_name
from tests.conftest import start_process, stop_process
from tests.faults.harness import Load, Tally, Watch, Web

MODULE = "multihost"  # tests/sample_modules/multihost, opt-in: loaded by name
PACKAGE = f"tests.sample_modules.{MODULE}"
REPORT = ROOT / "var" / "multihost.md"
# How the hosts start their processes: workers skip mingle and gossip (as the test suite's do),
# gunicorn gives its worker 5 s to finish when stopped.
COMMANDS = Commands(quiet=True, graceful_timeout=5)
WEB_WORKERS = 1  # gunicorn workers per host: two cores, shared
SUBNET = "10.231"  # the bridge's /24 is 10.231.N.0 with a free N


# ------------------------------------------------------------------------------ network
def network_unavailable() -> str | None:
    """Why hosts cannot get network namespaces here (None: they can)."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are a Linux feature"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    return None


def ip(*args: str) -> None:
    """Run ``ip ARGS``; raises CalledProcessError (with its message) on failure."""
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@dataclass
class Network:
    """A bridge in the root namespace (address ``gateway``) and, per host, a network namespace
    joined to it by a veth pair: the host's address is reachable from the root namespace and
    the gateway from the host; ``cut`` / ``restore`` take a host's link down and up."""

    hosts: Sequence[str]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    subnet: int = 0
    created: list[tuple[str, str]] = field(default_factory=list)  # ("netns"|"link", name), to delete

    @property
    def bridge(self) -> str:
        """The bridge's interface name (at most 15 characters)."""
        return f"mhbr{self.tag}"

    @property
    def gateway(self) -> str:
        """The bridge's address: where the shared servers listen."""
        return f"{SUBNET}.{self.subnet}.1"

    def namespace(self, host: str) -> str:
        """The network namespace of ``host``."""
        return f"mh-{self.tag}-{host}"

    def link(self, host: str) -> str:
        """The root-namespace end of ``host``'s veth pair (what ``cut`` takes down)."""
        return f"mh{self.tag}{self.hosts.index(host)}"

    def address(self, host: str) -> str:
        """``host``'s address inside its namespace."""
        return f"{SUBNET}.{self.subnet}.{2 + self.hosts.index(host)}"

    def launcher(self, host: str) -> list[str]:
        """The prefix that runs a command in ``host``'s namespace (``ip`` execs it: same process id)."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def create(self) -> Network:
        """Create the bridge, the namespaces and the links; on failure delete what was made and raise."""
        try:
            self.subnet = self._free_subnet()
            ip("link", "add", self.bridge, "type", "bridge")
            self.created.append(("link", self.bridge))
            ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for host in self.hosts:
                namespace, outside = self.namespace(host), self.link(host)
                inside = f"mi{self.tag}{self.hosts.index(host)}"
                ip("netns", "add", namespace)
                self.created.append(("netns", namespace))
                ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                self.created.append(("link", outside))
                ip("link", "set", inside, "netns", namespace)
                ip("link", "set", outside, "master", self.bridge)
                ip("link", "set", outside, "up")
                ip("-n", namespace, "addr", "add", f"{self.address(host)}/24", "dev", inside)
                ip("-n", namespace, "link", "set", inside, "up")
                ip("-n", namespace, "link", "set", "lo", "up")
        except (OSError, subprocess.SubprocessError):
            self.delete()
            raise
        return self

    def cut(self, host: str) -> None:
        """Take ``host`` off the network: its link goes down, its processes keep running."""
        ip("link", "set", self.link(host), "down")

    def restore(self, host: str) -> None:
        """Bring ``host``'s link up again."""
        ip("link", "set", self.link(host), "up")

    def delete(self) -> None:
        """Delete the namespaces and links made (deleting one end of a veth pair deletes both)."""
        for kind, name in reversed(self.created):
            command = ["netns", "del", name] if kind == "netns" else ["link", "del", name]
            subprocess.run(["ip", *command], capture_output=True, timeout=30)
        self.created.clear()

    @staticmethod
    def _free_subnet() -> int:
        shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=30).stdout
        used = {int(n) for n in re.findall(rf"{re.escape(SUBNET)}\.(\d+)\.", shown)}
        return random.choice([n for n in range(100, 250) if n not in used])


# ------------------------------------------------------------------------------ hosts
@dataclass
class Host:
    """One host: its settings (own data folder, web address), folder (``work/`` is the working
    directory, ``logs/`` the process logs) and processes, started through ``launcher``."""

    name: str
    settings: Settings
    folder: Path
    launcher: tuple[str, ...] = ()
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    web: Web | None = None

    @property
    def hostname(self) -> str:
        """The host's name: ``%h`` in its Celery node names (``main@mh-a``)."""
        return f"mh-{self.name}"

    @property
    def workdir(self) -> Path:
        """The processes' working directory."""
        return self.folder / "work"

    @property
    def logs(self) -> Path:
        """Where each process logs (``<name>.log``)."""
        return self.folder / "logs"

    @property
    def url(self) -> str:
        """Base URL of the host's web app."""
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    @property
    def env(self) -> dict[str, str]:
        """What the processes get besides the settings: our code importable from any working directory."""
        return {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}

    def commands(self) -> dict[str, list[str]]:
        """The command lines of ``bin/insights run`` (``process_commands``) for this host: the web
        with ``WEB_WORKERS`` workers (same bind and threads), ``%h`` naming this host."""
        commands = process_commands(self.settings, COMMANDS)
        bind = f"{self.settings.web_host}:{self.settings.web_port}"
        commands["web"] = COMMANDS.web(bind, workers=WEB_WORKERS, threads=self.settings.web_threads)
        return {name: [arg.replace("%h", self.hostname) for arg in line] for name, line in commands.items()}

    def nodes(self) -> list[str]:
        """The Celery node names of the host's workers (``-n``)."""
        return [line[line.index("-n") + 1] for line in self.commands().values() if "-n" in line]

    def start(self) -> Host:
        """Start every process (not waiting for them; see ``Cluster.wait_ready``)."""
        for path in (self.workdir, self.logs, self.settings.data_dir):
            path.mkdir(parents=True, exist_ok=True)
        commands = self.commands()
        self.web = Web(
            self.settings, self.logs / "web.log", commands.pop("web"), cwd=self.workdir, launcher=self.launcher,
            env=self.env,
        )  # fmt: skip
        self.processes = {
            name: start_process(
                self.settings, line, self.logs / f"{name}.log", cwd=self.workdir, launcher=self.launcher, env=self.env
            )
            for name, line in commands.items()
        }
        self.web.launch()
        assert self.web.process is not None
        self.processes["web"] = self.web.process
        return self

    def pids(self) -> dict[str, int]:
        """Process id of each process (web: the gunicorn master), by name."""
        return {name: process.pid for name, process in self.processes.items()}

    def alive(self) -> dict[str, bool]:
        """Which processes still run."""
        return {name: process.poll() is None for name, process in self.processes.items()}

    def kill(self) -> float:
        """SIGKILL every process group of the host at once (no warning); returns when (``time.time()``)."""
        at = time.time()
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        for process in self.processes.values():
            process.wait()
        return at

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after 20 s)."""
        stop_process(*(p for p in self.processes.values() if p.poll() is None))

    def owner_of(self, pid: int) -> str | None:
        """Which of the host's processes ``pid`` is or descends from (a pool child of the worker), else None."""
        own = {process.pid: name for name, process in self.processes.items()}
        for _ in range(5):
            if pid in own:
                return own[pid]
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return None
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: the parent's id
        return None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every process log, for a failure message."""
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts)


@dataclass
class Cluster:
    """The two hosts, their shared servers' settings, the network (None: all on loopback, with
    the reason in ``no_network``) and a ``Watch`` of the pipeline (an app in the test process)."""

    hosts: dict[str, Host]
    network: Network | None
    no_network: str | None
    watch: Watch
    folder: Path

    @property
    def app(self) -> Insights:
        """The test process's application object (connected to the shared servers)."""
        return self.watch.app

    def host(self, name: str) -> Host:
        """One host by name (``a``, ``b``)."""
        return self.hosts[name]

    def urls(self, *names: str) -> tuple[str, ...]:
        """The web URLs of these hosts (all by default)."""
        return tuple(self.hosts[n].url for n in (names or self.hosts))

    def wait_ready(self, names: Iterable[str] | None = None, timeout: float = 120.0) -> None:
        """Wait until the hosts' webs serve, their workers answer pings by node name, and their
        batchers and beats run (a batcher joins the intake group; a standby one may wait)."""
        hosts = [self.hosts[n] for n in (names or self.hosts)]
        wanted = {node for host in hosts for node in host.nodes()}
        deadline = time.monotonic() + timeout
        for host in hosts:
            assert host.web is not None
            host.web.wait_serving(max(1.0, deadline - time.monotonic()))
        answered: set[str] = set()
        while True:
            dead = {
                f"{h.name}:{n}": p.returncode for h in hosts for n, p in h.processes.items() if p.poll() is not None
            }
            if dead:
                raise AssertionError(
                    f"processes exited while starting: {dead}\n" + "\n".join(h.log_tail() for h in hosts)
                )
            try:
                replies = self.app.celery.control.ping(destination=sorted(wanted - answered), timeout=1.0)
            except Exception:  # kombu's connection errors: ask again
                replies = []
            answered |= {name for reply in replies for name in reply}
            if answered >= wanted and self.batchers_reading() > 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not ready after {timeout:g} s: workers {sorted(wanted - answered)} do not answer, "
                    f"{self.batchers_reading()} batchers read\n" + "\n".join(h.log_tail() for h in hosts)
                )
            time.sleep(0.5)

    def batchers_reading(self) -> int:
        """Consumers in the intake stream's group (batchers that joined it)."""
        try:
            return len(self.app.services.redis.xinfo_consumers(self.app.intake.stream, GROUP))
        except redis.RedisError:
            return 0

    def owner_of(self, pid: int) -> tuple[str, str] | None:
        """(host, process) that ``pid`` belongs to, else None."""
        for host in self.hosts.values():
            name = host.owner_of(pid)
            if name is not None:
                return host.name, name
        return None

    def shard_pids(self, name: str) -> set[int]:
        """Process ids the host's shard worker had (``-P solo``: it runs tasks in its own process)."""
        return {self.hosts[name].processes["shards"].pid}

    def database(self) -> Any:
        """The multihost module's database."""
        client: pymongo.MongoClient[dict[str, Any]] = self.app.services.mongo
        return client[database_name(self.app.settings.mongo_db_prefix, MODULE)]

    def stop(self) -> None:
        """Stop both hosts' processes side by side."""
        stop_process(*(p for h in self.hosts.values() for p in h.processes.values() if p.poll() is None))


def host_settings(base: Settings, name: str, folder: Path, web_host: str, web_port: int, **overrides: Any) -> Settings:
    """``base`` (the shared servers, the module list) with this host's data folder and web address."""
    data = folder / "data"
    return dataclasses.replace(
        base, data_dir=data, fs_root=data / "files", web_host=web_host, web_port=web_port, **overrides
    )


# ------------------------------------------------------------------------------ load
@dataclass
class OrderedLoad(Load):
    """A ``Load`` whose events each name a user (``users`` per sender thread, so one user's
    events are sent one request after the other) and carry the user's next sequence number."""

    users: int = 4
    _next: dict[str, int] = field(default_factory=dict)

    def make_events(self, sender: int, serial: int) -> list[dict[str, Any]]:
        """``batch`` events of sender ``sender``, round-robin over its users, numbered per user."""
        events = []
        for i in range(self.batch):
            user = f"{self.run[:8]}-{sender}-{(serial + i) % self.users}"
            seq = self._next.get(user, 0)
            self._next[user] = seq + 1
            events.append({"id": f"{self.run}-{sender}-{serial + i}", "mh_run": self.run, "username": user, "seq": seq})
        return events


# ------------------------------------------------------------------------------ results
@dataclass
class Outcome:
    """A phase's events as the ``ordered`` handler recorded them, and the measures of the table."""

    phase: str
    tally: Tally
    out_of_order: int  # sequence numbers handled after a higher one of the same user (first deliveries)
    users_out_of_order: list[str]
    handled_by: dict[str, int]  # first deliveries per host
    redelivered: int  # events of a task the fault's victim had in hand, handled again by the survivor
    twice: list[str]  # any other event handled more than once, with the (host, process) of each delivery
    takeover: str  # seconds, or why there is none
    seconds: float
    answers: str

    def row(self) -> str:
        """The phase's row of the table."""
        t = self.tally
        by = ", ".join(f"{host}: {n}" for host, n in sorted(self.handled_by.items()))
        return (
            f"| {self.phase} | {t.sent} | {t.acknowledged} | {t.handled} | {t.lost} "
            f"| {t.duplicated - self.redelivered} | {self.redelivered} "
            f"| {self.out_of_order} | {self.takeover} | {by} | {self.answers} | {self.seconds:.1f} |"
        )


HEADER = (
    "| phase | sent | acknowledged | handled | lost | duplicated | redelivered after the fault | out-of-order "
    "| takeover seconds | handled by host | requests: answers | seconds |"
)


def deliveries(cluster: Cluster, run: str) -> list[dict[str, Any]]:
    """The handler's documents of a run: ``_id`` (event id), ``deliveries``, ``user``, ``seq``,
    ``pids`` and ``times`` (one each per delivery)."""
    return list(cluster.database()["deliveries"].find({"run": run}))


def out_of_order(cluster: Cluster, run: str) -> tuple[int, list[str]]:
    """Per user of a run, the sequence numbers handled after a higher one (a repeated number, a
    redelivery, counts once: its first handling); returns the count and the users affected."""
    inversions, users = 0, []
    for doc in cluster.database()["sequences"].find({"run": run}):
        seen: set[int] = set()
        highest = -1
        bad = 0
        for seq in doc["seq"]:
            if seq in seen:
                continue
            seen.add(seq)
            if seq < highest:
                bad += 1
            highest = max(highest, seq)
        if bad:
            inversions += bad
            users.append(doc["user"])
    return inversions, sorted(users)


def handled_by(cluster: Cluster, docs: list[dict[str, Any]]) -> dict[str, int]:
    """First deliveries per host (by the process that ran the handler)."""
    counts: dict[str, int] = {}
    owners: dict[int, str] = {}
    for doc in docs:
        pid = doc["pids"][0]
        if pid not in owners:
            owner = cluster.owner_of(pid)
            owners[pid] = owner[0] if owner else "?"
        counts[owners[pid]] = counts.get(owners[pid], 0) + 1
    return counts


def takeover(cluster: Cluster, docs: list[dict[str, Any]], victim: str, survivor: str, at: float) -> str:
    """Seconds from ``at`` (the victim host killed or cut off) to the first event the survivor's
    shard worker handled for a shard whose last event before ``at`` the victim's had handled."""
    shards = cluster.app.settings.shards
    victim_pids, survivor_pids = cluster.shard_pids(victim), cluster.shard_pids(survivor)
    last: dict[int, tuple[float, int]] = {}  # shard -> (time, pid) of its last delivery before `at`
    after: dict[int, float] = {}  # shard -> first delivery by the survivor's shard worker after `at`
    for doc in docs:
        shard = shard_of({"username": doc["user"]}, "user", shards)
        for pid, t in zip(doc["pids"], doc["times"], strict=False):
            if t <= at and t > last.get(shard, (0.0, 0))[0]:
                last[shard] = (t, pid)
            if t > at and pid in survivor_pids:
                after[shard] = min(t, after.get(shard, float("inf")))
    held = [shard for shard, (_, pid) in last.items() if pid in victim_pids]
    if not held:
        return f"n/a (host {victim} handled no shard last)"
    taken = [after[shard] - at for shard in held if shard in after]
    if not taken:
        return f"never (shards {held} of host {victim})"
    return f"{min(taken):.1f} (all {len(held)}: {max(taken):.1f})" if len(taken) == len(held) else f"{min(taken):.1f}"


def shard_holder(cluster: Cluster, run: str, prefer: str) -> str:
    """The host whose shard worker handled the last event so far of most shards in ``run``: the one
    holding the shards (with one consumer per shard queue); ``prefer`` on a tie or without events."""
    shards = cluster.app.settings.shards
    last: dict[int, tuple[float, int]] = {}  # shard -> (time, pid) of its last delivery
    for doc in deliveries(cluster, run):
        shard = shard_of({"username": doc["user"]}, "user", shards)
        for pid, t in zip(doc["pids"], doc["times"], strict=False):
            if t > last.get(shard, (0.0, 0))[0]:
                last[shard] = (t, pid)
    held = {name: sum(1 for _, pid in last.values() if pid in cluster.shard_pids(name)) for name in cluster.hosts}
    most = max(held.values())
    return prefer if held.get(prefer) == most else max(held, key=lambda name: held[name])


def outcome(
    cluster: Cluster,
    phase: str,
    load: Load,
    seconds: float,
    victim: str | None = None,
    survivor: str | None = None,
    at: float | None = None,
) -> Outcome:
    """Count a settled phase's load in the handler's records."""
    docs = deliveries(cluster, load.run)
    inversions, users = out_of_order(cluster, load.run)
    moved = "n/a" if victim is None or survivor is None or at is None else takeover(cluster, docs, victim, survivor, at)
    redelivered, twice = redeliveries(cluster, docs, victim, at)
    return Outcome(
        phase=phase,
        tally=cluster.watch.tally(load),
        out_of_order=inversions,
        users_out_of_order=users,
        handled_by=handled_by(cluster, docs),
        redelivered=redelivered,
        twice=twice,
        takeover=moved,
        seconds=seconds,
        answers=", ".join(f"{status}: {n}" for status, n in sorted(load.statuses.items())),
    )


def redeliveries(
    cluster: Cluster, docs: list[dict[str, Any]], victim: str | None, at: float | None
) -> tuple[int, list[str]]:
    """Events handled more than once: how many were in a task the fault's ``victim`` had in hand
    (delivered once by the victim, in a task it began before its lease could run out after the
    fault at ``at``, once more after the fault by another host: Celery delivers at least once, and
    the handler, idempotent by event id, absorbs it), and a description of every other (a second
    consumer of a shard queue, a task run twice unprovoked)."""
    redelivered, other = 0, []
    began_by = (at or 0.0) + cluster.hosts[victim].settings.lease_ttl if victim else 0.0
    for doc in docs:
        if doc["deliveries"] < 2:
            continue
        owners = [cluster.owner_of(pid) for pid in doc["pids"]]
        first, then = (owners[0], doc["times"][0]), list(zip(owners[1:], doc["times"][1:], strict=True))
        if (
            victim is not None
            and at is not None
            and len(then) == 1
            and first[0] is not None
            and first[0][0] == victim
            and first[1] <= began_by
            and all(owner is not None and owner[0] != victim and t > at for owner, t in then)
        ):
            redelivered += 1
        else:
            other.append(f"{doc['_id']} by {owners}")
    return redelivered, other


# ------------------------------------------------------------------------------ operator commands
def replayed_ids(cluster: Cluster, host: Host) -> tuple[set[str], str]:
    """Run ``python -m tasks replay --log`` from ``host``'s working directory (in its namespace,
    with its settings) into an intake stream no batcher reads (a Redis prefix of its own: the
    live pipeline is left alone); returns the event ids it submitted and its output."""
    prefix = f"replaycheck{uuid.uuid4().hex[:8]}:"
    settings = dataclasses.replace(host.settings, redis_prefix=prefix)
    result = subprocess.run(
        [*host.launcher, sys.executable, "-m", "tasks", "replay", "--log", "--no-progress", "--wait", "0"],
        cwd=host.workdir,
        env={**os.environ, **host.env, **settings.to_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = (result.stdout + result.stderr).strip()[-2000:]
    client = cluster.app.services.redis
    stream = Keys(prefix).intake_stream
    ids: set[str] = set()
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(stream)  # type: ignore[assignment]
    for _, fields in entries:
        ids.update(json.loads(fields.get(b"ids", b"[]")))
    client.delete(stream)
    if result.returncode != 0:
        return set(), f"exit {result.returncode}: {output}"
    return ids, output


def write_table(rows: list[str], notes: list[str], path: Path = REPORT) -> str:
    """Write the table (with when and where, and notes) to ``path``; returns it."""
    lines = [
        "# Multi-host test (tests/multihost)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.cpu_count()} CPUs: two hosts (web, batcher, worker, "
        "shard worker, beat each) sharing one Redis and one nx-27017, steady HTTP load over both webs. "
        "handled/lost count acknowledged (202) events in the `ordered` handler's records; duplicated = "
        "ids handled more than once; out-of-order = a user's sequence numbers handled after a higher one; "
        "takeover = seconds from the fault to the first event the surviving host's shard worker handled "
        "for a shard the other host had handled last (all: until every such shard was).",
        "",
        HEADER,
        "|" + "---|" * (HEADER.count("|") - 1),
        *rows,
        "",
        *[f"- {note}" for note in notes],
        "",
    ]
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
