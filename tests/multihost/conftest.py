"""The multi-host test's deployment (module-scoped: its tests are the phases of one run) and its table."""

from __future__ import annotations

import dataclasses
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from config.settings import Settings
from tasks.app import create_insights
from tasks.ops.embedded import HOST, EmbeddedMongo, EmbeddedRedis, free_port
from tests.faults.harness import Watch, excluded_modules
from tests.multihost.cluster import (
    MODULE,
    PACKAGE,
    REPORT,
    Cluster,
    Host,
    Network,
    host_settings,
    network_unavailable,
    write_table,
)

HOSTS = ("a", "b")
BEAT_LOCK_TIMEOUT = 10.0  # a killed host's beat lock passes to the other beat this soon (default 60 s)


@dataclasses.dataclass
class Table:
    """Rows (one per phase) and notes of the printed table."""

    rows: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


WRITTEN: list[str] = []  # the tables written in this session, printed in the terminal summary


@pytest.fixture(scope="module")
def table() -> Iterator[Table]:
    """The phases add their rows; the table is written to var/multihost.md at the end (and printed
    in pytest's terminal summary, whether the tests passed or not)."""
    report = Table()
    yield report
    if report.rows:
        WRITTEN.append(write_table(report.rows, report.notes))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the multi-host table(s) after the test results."""
    for text in WRITTEN:
        terminalreporter.write_sep("=", "multi-host test")
        terminalreporter.write(f"{text}(written to {REPORT})\n")


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory, table: Table) -> Iterator[Cluster]:
    """Two hosts (in network namespaces where possible), one Redis and one nx-27017 shared by both,
    every process started and ready; everything stopped (and the namespaces deleted) afterwards."""
    folder = tmp_path_factory.mktemp("multihost")
    with ExitStack() as stack:
        reason = network_unavailable()
        network: Network | None = None
        if reason is None:
            try:
                network = Network(HOSTS).create()
                stack.callback(network.delete)
            except (OSError, subprocess.SubprocessError) as error:
                detail = getattr(error, "stderr", "") or ""
                reason = f"could not make network namespaces: {error} {detail}".strip()
        table.notes.append(
            f"hosts in network namespaces on bridge {network.bridge} ({network.gateway}/24)"
            if network
            else f"hosts on loopback, no network namespaces: {reason}"
        )
        bind = network.gateway if network else HOST
        redis_server = stack.enter_context(EmbeddedRedis(folder / "redis", persist=True, host=bind))
        mongo_server = stack.enter_context(EmbeddedMongo(folder / "mongo", host=bind))
        base = dataclasses.replace(
            settings,
            redis_url=redis_server.url,
            mongo_url=mongo_server.url,
            mongo_db_prefix=f"mh{uuid.uuid4().hex[:8]}_",
            module_packages=("modules", PACKAGE),
            exclude_modules=excluded_modules(MODULE),
            beat_lock_timeout=BEAT_LOCK_TIMEOUT,
        )
        hosts = {}
        for name in HOSTS:
            web_host = network.address(name) if network else HOST
            own = host_settings(base, name, folder / name, web_host, free_port())
            hosts[name] = Host(name, own, folder / name, tuple(network.launcher(name)) if network else ())
        app = create_insights(hosts[HOSTS[0]].settings)
        stack.callback(app.services.close)
        cluster = Cluster(hosts, network, reason, Watch(app.settings, app, folder, MODULE), folder)
        stack.callback(cluster.stop)
        for host in hosts.values():
            host.start()
        cluster.wait_ready()
        yield cluster


def logs_of(cluster: Cluster) -> Path:
    """Where the hosts' logs are (for failure messages)."""
    return cluster.folder
