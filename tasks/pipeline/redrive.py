"""Redrive: send again the tasks of a batch whose messages the broker lost.

Handler tasks are acknowledged late and requeued if their worker dies (``task_acks_late``,
``task_reject_on_worker_lost``, the Redis transport's visibility timeout). That covers a
message a worker has *registered* as unacknowledged, not the moment before: kombu's Redis
transport takes a message off its queue with ``BRPOP`` and only writes it to its
``unacked`` hash once the reply has been read and decoded in the worker's main process. A
worker killed in between (the reply still in its socket) takes the message with it: it is
in no queue and not in ``unacked``, so no visibility timeout brings it back, and the batch's
events never reach that handler (tests/faults: about one SIGKILL under load in four lost
a handler message this way). A chord's ``batch.record`` can be lost too: the worker that
completes a chord claims its callback in Redis (for ``2 * result_chord_join_timeout``)
before publishing it; killed in between, the callback is not sent, and a header task
redelivered while the claim lasts does not send it either.

The batch records are the safety net. Every dispatched batch stays in an index of
unfinished batches until ``batch.record`` finishes it. The batcher looks every few seconds
at batches sent more than ``INSIGHTS_REDRIVE_AFTER`` seconds ago; in one consistent
snapshot of the broker (its queues and its ``unacked`` hash, read in one MULTI) it looks
for their task messages. A handler task that has no outcome yet and whose message is
nowhere is lost: it is sent again, with the batch's other lost tasks, in a chord of their
own whose ``batch.record`` completes the record from the outcomes every handler task keeps
(``Keys.done``). A batch whose handler tasks all ran but whose ``batch.record`` is
nowhere gets that task alone. After ``MAX_REDRIVES`` re-sends the events of the handler
tasks still missing are dead-lettered (``deadletters retry`` sends them again) and the
batch is finished with those handlers failed.

A message taken for lost that was not (a worker frozen between the two steps above, a
snapshot taken in that instant) costs one more delivery, never a loss: handlers are
idempotent by event id, a task that already finished returns its kept outcome, and
``batch.record`` may run twice. A re-sent task of an ordered (per-shard) handler runs after
later batches of its shard, as does a task requeued after a worker died. Only Redis brokers
need this (RabbitMQ acknowledges messages it delivered), and a backlog longer than
``MAX_SCAN`` messages postpones the look until it has drained.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from celery.canvas import Signature

from tasks.pipeline.batch_store import PENDING, BatchStore
from tasks.pipeline.dead_letters import DeadLetters
from tasks.pipeline.dispatch import Dispatcher
from tasks.pipeline.kombu_layout import KombuRedisLayout

log = logging.getLogger(__name__)

MAX_SCAN = 10_000  # queued broker messages one look may read; a longer backlog postpones redrives
MAX_REDRIVES = 3  # re-sends of one batch before its missing handler tasks' events are dead-lettered
CANDIDATES = 500  # overdue batches looked at per pass


@dataclass
class Redriven:
    """What one pass did: per batch id, the labels of the tasks sent again."""

    handlers: dict[str, list[str]] = field(default_factory=dict)
    records: list[str] = field(default_factory=list)  # batches whose batch.record alone was sent again
    given_up: dict[str, list[str]] = field(default_factory=dict)  # labels dead-lettered, per batch
    postponed: bool = False  # the broker's backlog was too long to look through

    def __bool__(self) -> bool:
        return bool(self.handlers or self.records or self.given_up)


class Redriver:
    """Finds unfinished batches whose task messages are nowhere in the broker, and sends them again."""

    def __init__(
        self,
        store: BatchStore,
        dispatcher: Dispatcher,
        dead_letters: DeadLetters,
        broker: redis.Redis | None,
        layout: KombuRedisLayout,
        after: float,
    ) -> None:
        """``broker``: a client of the Redis broker (None: the broker is not Redis, nothing to do);
        ``layout``: where kombu keeps its messages there; ``after``: seconds a batch may stay
        unfinished before its messages are looked for."""
        self.store = store
        self.dispatcher = dispatcher
        self.dead_letters = dead_letters
        self.broker = broker
        self.layout = layout
        self.after = after

    def run(self, now: float | None = None) -> Redriven:
        """One pass; returns what was sent again. One process looks at a time: the active batcher
        (``Batcher.redrive``, under the active batcher's lease)."""
        done = Redriven()
        if self.broker is None:
            return done
        now = time.time() if now is None else now
        store = self.store
        candidates = store.overdue(now - self.after, CANDIDATES)
        if not candidates:
            return done
        queues = {ref["queue"] for r in store.get_many(candidates) if r for ref in r.get("tasks", {}).values()}
        queues.add(self.dispatcher.record_queue())
        present = self._in_broker(queues)
        if present is None:
            done.postponed = True
            return done
        # Read again after the snapshot: a batch finished meanwhile is left alone, and a task
        # that ran meanwhile has kept its outcome before its message left ``unacked``.
        for batch_id, record in zip(candidates, store.get_many(candidates), strict=True):
            if record is None or record["state"] != PENDING or "tasks" not in record:
                store.forget(batch_id)
                continue
            self._redrive(record, present, done)
        return done

    def _redrive(self, record: dict[str, Any], present: set[str], done: Redriven) -> None:
        batch_id, tasks = record["batch"], record["tasks"]
        outcomes = self.store.done_outcomes(batch_id, list(tasks))
        waiting = [label for label, ref in tasks.items() if label not in outcomes and ref["id"] in present]
        if waiting:
            # Queued or being handled. Not now: the batch.record of a chord of the lost tasks
            # alone could finish the batch, and drop its events, before these ran.
            return
        lost = [label for label in tasks if label not in outcomes]
        if not lost:
            if record.get("body") in present:
                return
            body = self.dispatcher.record_signature(batch_id)
            if self.store.resent(batch_id, {}, body.id):
                log.warning("batch %s: batch.record was lost; sending it again", batch_id)
                body.apply_async()
                self.dispatcher.stop_listening([body])
                done.records.append(batch_id)
            return
        if record.get("resent", 0) >= MAX_REDRIVES:
            self._give_up(record, lost)
            done.given_up[batch_id] = lost
            return
        header: list[Signature] = [self.dispatcher.handler_signature(batch_id, label, tasks[label]) for label in lost]
        body_id = str(uuid.uuid4())
        if self.store.resent(batch_id, {sig.args[2]: sig.id for sig in header}, body_id):
            log.warning(
                "batch %s: %d handler task(s) were lost by the broker; sending them again: %s",
                batch_id,
                len(lost),
                ", ".join(lost),
            )
            self.dispatcher.send_chord(batch_id, header, body_id)
            done.handlers[batch_id] = lost

    def _give_up(self, record: dict[str, Any], lost: Sequence[str]) -> None:
        """Dead-letter the events of handler tasks sent ``MAX_REDRIVES`` times in vain; finish the batch."""
        batch_id, tasks = record["batch"], record["tasks"]
        error = f"LostTask: sent {record.get('resent', 0) + 1} times, never handled"
        try:
            events = self.store.events(batch_id)
        except KeyError:
            events = []
        outcomes = []
        for label in lost:
            ref = tasks[label]
            items = events if ref["indices"] is None else [events[i] for i in ref["indices"] if i < len(events)]
            if items:
                self.dead_letters.add(ref["task"], items, error, "", batch_id)
            outcomes.append(
                {"handler": label, "ok": False, "events": len(items), "dead_lettered": len(items), "error": error}
            )
        log.error("batch %s: giving up on %s; %s", batch_id, ", ".join(lost), error)
        self.store.finish(batch_id, outcomes)

    def _in_broker(self, queues: Iterable[str]) -> set[str] | None:
        """Ids of the task messages queued or unacknowledged, from one consistent snapshot
        (None if there are more than ``MAX_SCAN`` queued messages to read)."""
        assert self.broker is not None
        keys = [key for queue in sorted(queues) for key in self.layout.queue_keys(queue)]
        pipe = self.broker.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        if sum(pipe.execute()) > MAX_SCAN:
            return None
        pipe = self.broker.pipeline(transaction=True)  # MULTI: no message moves between the reads
        for key in keys:
            pipe.lrange(key, 0, -1)
        pipe.hvals(self.layout.unacked)
        *lists, unacked = pipe.execute()
        found = [_task_id(raw) for values in lists for raw in values]
        found += [_task_id(raw, unacked=True) for raw in unacked]
        return {task_id for task_id in found if task_id}


def _task_id(raw: bytes | str, unacked: bool = False) -> str | None:
    """The task id of a kombu message as the Redis transport stores it (in ``unacked``: with exchange and key)."""
    try:
        message = json.loads(raw)
        if unacked:
            message = message[0]
        task_id = message["headers"]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return str(task_id) if task_id else None
