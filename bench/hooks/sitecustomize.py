"""Benchmark-only startup hook: counts the MongoDB commands of a deployment's processes.

``bench/sizing.py`` puts this directory first on the ``PYTHONPATH`` of the processes it starts
(web, batcher, Celery workers), with ``BENCH_MONGO_COUNTS`` naming a directory; Python then
imports this module at startup (``site`` imports ``sitecustomize``). Without that variable it
does nothing. It registers a pymongo ``CommandListener`` before any client exists (so every
client of the process reports to it) and counts, per (database, collection, command), the
commands started and their statements: documents of an ``insert``, entries of an ``update``
or ``delete`` (a ``bulk_write`` of 500 upserts is one command of 500 statements). Every
process (and every forked child, whose counts start at zero) rewrites
``<dir>/<pid>.json`` at most every ``INTERVAL`` seconds from a daemon thread, so the
benchmark reads the counts without stopping the processes.

Nothing of this is in ``tasks/``: production processes never load it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

INTERVAL = 0.2
STATEMENTS = {"insert": "documents", "update": "updates", "delete": "deletes"}


class _Counts:
    """The counts of this process and the thread that writes them to ``<directory>/<pid>.json``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        self.counts: dict[str, list[int]] = {}
        self.dirty = False
        self.pid = 0  # the process whose writer thread runs (0: none yet)

    def add(self, key: str, statements: int) -> None:
        """Count one command of ``statements`` statements under ``key``."""
        with self.lock:
            if self.pid != os.getpid():
                self.pid = os.getpid()
                threading.Thread(target=self._write, name="bench-mongo-counts", daemon=True).start()
            entry = self.counts.setdefault(key, [0, 0])
            entry[0] += 1
            entry[1] += statements
            self.dirty = True

    def after_fork(self) -> None:
        """In a forked child: fresh lock, zero counts, no writer yet (the parent keeps its own file)."""
        self.lock = threading.Lock()
        self.counts = {}
        self.dirty = False
        self.pid = 0

    def _write(self) -> None:
        pid = os.getpid()
        path = self.directory / f"{pid}.json"
        while self.pid == pid:
            time.sleep(INTERVAL)
            with self.lock:
                if not self.dirty:
                    continue
                text = json.dumps(self.counts)
                self.dirty = False
            temporary = path.with_suffix(".tmp")
            temporary.write_text(text)
            temporary.replace(path)


def _install(directory: Path) -> None:
    """Register the listener (see the module docstring)."""
    from pymongo import monitoring

    counts = _Counts(directory)

    class Counter(monitoring.CommandListener):
        """Counts commands and statements per (database, collection, command)."""

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            """Count a command as it starts."""
            name = event.command_name
            target = event.command.get(name)
            items = event.command.get(STATEMENTS.get(name, ""), ())
            statements = len(items) if isinstance(items, list | tuple) else 1
            counts.add(f"{event.database_name}\t{target if isinstance(target, str) else ''}\t{name}", statements)

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            """Nothing: only started commands are counted."""

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            """Nothing: only started commands are counted."""

    os.register_at_fork(after_in_child=counts.after_fork)
    monitoring.register(Counter())


_directory = os.environ.get("BENCH_MONGO_COUNTS")
if _directory:
    _install(Path(_directory))
