"""Which event log a deployment keeps (``INSIGHTS_EVENT_LOG``), behind one small interface.

``mongo`` (the default, ``tasks.pipeline.mongo_log``): compressed documents per batch in MongoDB,
written by whichever batcher handled the batch and read, replayed and pruned alike from any host.
``local`` (``tasks.pipeline.event_log``): JSON-lines segment files under
``$INSIGHTS_DATA_DIR/eventlog`` on the batcher's host; for a single host only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import pymongo

from config.settings import ConfigError, Settings
from tasks.pipeline.event_log import EncodedRecord, EventLog, Position
from tasks.pipeline.mongo_log import MongoEventLog
from tasks.pipeline.parsing import OnMalformed
from tasks.storage.mongo import event_log_database


class EventLogBackend(Protocol):
    """What the batcher, replay and retention use of an event log."""

    @property
    def description(self) -> str:
        """What a replay checkpoint records to make sure it resumes the same log."""

    def append_encoded(self, records: Sequence[EncodedRecord], batch: str | None = None) -> None:
        """Append one batch's ``(id, received, event as ASCII JSON, sender or None)`` records."""

    def read(
        self,
        start: Position | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        on_malformed: OnMalformed | None = None,
    ) -> Iterator[tuple[Position, dict[str, Any]]]:
        """The records after ``start``, received from ``since`` to ``until``, in the log's order."""

    def remove_older(self, older_than: float) -> int:
        """Delete what is older than the unix time ``older_than``; returns how many segments or documents."""

    def close(self) -> None:
        """Release files or connections; the log may be used again afterwards."""


def open_event_log(settings: Settings, mongo: pymongo.MongoClient[dict[str, Any]] | None = None) -> EventLogBackend:
    """The event log ``settings`` choose; ``mongo``: the client to use (else the log makes and closes its own)."""
    if settings.event_log == "local":
        return EventLog(settings.event_log_dir)
    if settings.event_log == "mongo":
        client = mongo or pymongo.MongoClient(settings.mongo, serverSelectionTimeoutMS=10_000, connect=False)
        return MongoEventLog(
            client[event_log_database(settings.mongo_db_prefix)],
            max_part_bytes=4 * settings.max_request_bytes,  # an event as ASCII-escaped JSON: at most 3x its UTF-8
            close_client=mongo is None,
        )
    raise ConfigError(f"{Settings.variable('event_log')} must be mongo or local, got {settings.event_log!r}")
