"""The command line of every Insights process: web, batcher, worker, shard workers, beat, flower.

Everything that starts one builds its command line here: the ``Procfile`` (``procfile()``; a
test keeps the file equal to it, print it with ``python -m config.processes --procfile``),
``python -m tasks run`` (tasks/ops/cli.py ``process_commands``), the test suite's workers and
batcher (tests/conftest.py, tests/faults) and the benchmarks (bench/).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from config.queues import queues_of_shard
from config.settings import Settings

WSGI_APP = "web.wsgi:app"
CELERY_APP = "tasks.worker"


@dataclass(frozen=True)
class Commands:
    """How one caller starts the processes; a method per process gives its argument list.

    ``python``: the interpreter that runs each program as ``python -m <program>`` (None: the
    programs by name, as the Procfile has them); ``loglevel``: of Celery processes; ``app``: the
    Celery app (``-A``); ``quiet``: workers start without mingle and gossip (tests, benchmarks);
    ``graceful_timeout``: seconds gunicorn gives its workers to finish when stopped.
    """

    python: str | None = sys.executable
    loglevel: str = "INFO"
    app: str = CELERY_APP
    quiet: bool = False
    graceful_timeout: float | None = None

    def web(
        self, bind: str, workers: int | str, threads: int | str | None = None, timeout: int | str | None = None
    ) -> list[str]:
        """gunicorn serving the web app on ``bind`` (host:port): ``threads`` per worker (``gthread``), else sync."""
        command = [*self._program("gunicorn"), "-w", str(workers)]
        if threads is not None:
            command += ["-k", "gthread", "--threads", str(threads)]
        command += ["-b", bind]
        if timeout is not None:
            command += ["--timeout", str(timeout)]
        if self.graceful_timeout is not None:
            command += ["--graceful-timeout", f"{self.graceful_timeout:g}"]
        return [*command, WSGI_APP]

    def batcher(self) -> list[str]:
        """The batcher: intake stream -> batches -> one chord each."""
        return [*self._program("tasks"), "batcher"]

    def worker(
        self,
        queues: Sequence[str] | str,
        *,
        solo: bool = False,
        concurrency: int | None = None,
        name: str | None = None,
    ) -> list[str]:
        """A Celery worker consuming ``queues``: single-process with ``solo`` (shard queues), else
        prefork with ``concurrency`` children (Celery's default: one per core)."""
        command = [*self._celery(), "worker", "-Q", queues if isinstance(queues, str) else ",".join(queues)]
        if solo:
            command += ["-P", "solo"]
        elif concurrency is not None:
            command += ["-c", str(concurrency)]
        command += ["-l", self.loglevel]
        if self.quiet:
            command += ["--without-mingle", "--without-gossip"]
        if name is not None:
            command += ["-n", name]
        return command

    def shard_worker(self, queues: Sequence[str], name: str | None = None) -> list[str]:
        """A worker for shard queues: single-process and holding one message at a time (the one it
        runs), so that whichever worker takes over a shard queue finds every other message still
        queued, in order. Start as many as you like for the same queues, on any hosts: each queue
        has one active consumer at a time (leases on Redis, single active consumer on RabbitMQ)."""
        return [*self.worker(queues, solo=True, name=name), "--prefetch-multiplier", "1"]

    def beat(self) -> list[str]:
        """Celery beat: RedBeat keeps the schedule and a single-beat lock in Redis (no ``-s`` file)."""
        return [*self._celery(), "beat", "-l", self.loglevel]

    def flower(self, port: int | str, address: str | None = None) -> list[str]:
        """Flower, the monitoring web app, on ``port`` (and ``address``)."""
        command = [*self._celery(), "flower", f"--port={port}"]
        return command if address is None else [*command, f"--address={address}"]

    def _celery(self) -> list[str]:
        return [*self._program("celery"), "-A", self.app]

    def _program(self, module: str) -> list[str]:
        if self.python is not None:
            return [self.python, "-m", module]
        return ["python", "-m", module] if module == "tasks" else [module]


# The Procfile ---------------------------------------------------------------------------------
WEB_CONCURRENCY = 4  # gunicorn worker processes (WEB_CONCURRENCY)
WEB_TIMEOUT = 120
FLOWER_PORT = 5555


def placeholder(variable: str, default: object) -> str:
    """``${VARIABLE:-default}``: the shell fills in the variable, or the default when unset or empty."""
    return f"${{{variable}:-{default}}}"


def procfile() -> dict[str, list[str]]:
    """The Procfile's processes: every kind queue, a shard worker per shard (the default number of
    shards; on several hosts, one consumes each shard queue and the others stand by), beat and flower,
    with ``${VAR:-default}`` where the platform or operator decides."""
    defaults = Settings()
    threads = Settings.variable("web_threads")
    commands = Commands(python=None)
    shards = {
        f"shard{k}": commands.shard_worker(queues_of_shard(defaults.queues, k), name=f"shard{k}@%h")
        for k in range(defaults.shards)
    }
    return {
        "web": commands.web(
            f"0.0.0.0:{placeholder('PORT', defaults.web_port)}",
            workers=placeholder("WEB_CONCURRENCY", WEB_CONCURRENCY),
            threads=placeholder(threads, defaults.to_env()[threads]),
            timeout=WEB_TIMEOUT,
        ),
        "batcher": commands.batcher(),
        "worker": commands.worker(placeholder("WORKER_QUEUES", ",".join(defaults.queues.all()))),
        **shards,
        "beat": commands.beat(),
        "flower": commands.flower(placeholder("FLOWER_PORT", FLOWER_PORT)),
    }


def procfile_text() -> str:
    """The Procfile, line by line (``name: command``)."""
    return "".join(f"{name}: {' '.join(command)}\n" for name, command in procfile().items())


if __name__ == "__main__":
    if sys.argv[1:] != ["--procfile"]:
        sys.exit("usage: python -m config.processes --procfile   (prints the Procfile)")
    print(procfile_text(), end="")
