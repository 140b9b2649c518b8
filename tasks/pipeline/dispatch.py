"""Dispatch: one chord per batch, one task per handler (per shard for ordered handlers).

The batch's events are stored once in Redis; each header task gets the batch id and the
indices of the events meant for it. The chord's body, ``batch.record``, stores every
outcome; handler tasks never raise, so the body runs once every header task has run. The
batch's record names every task message sent (id, task, indices, queue), so that tasks the
broker lost can be sent again (tasks/pipeline/redrive.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery import Celery, chord
from celery.canvas import Signature

from config.queues import shard_queue
from config.settings import Settings
from tasks.authoring.events import Property
from tasks.core.registry import Spec
from tasks.pipeline.batch_store import BatchStore, Record, TaskRef
from tasks.pipeline.shards import shard_of

RECORD_BATCH_TASK = "batch.record"

# Which events of a batch go to a handler task: indices into the batch, or None for all.
Selection = list[int] | None


class Dispatcher:
    """Sends batches to handler tasks as chords, over ``celery``, keeping their events and records
    in ``store``; ``handler_spec`` gives a handler's spec by task name, ``properties`` the
    registered event properties shard keys may name."""

    def __init__(
        self,
        celery: Celery,
        store: BatchStore,
        settings: Settings,
        handler_spec: Callable[[str], Spec],
        properties: Mapping[str, Property],
    ) -> None:
        self._celery = celery
        self._store = store
        self._settings = settings
        self._handler_spec = handler_spec
        self._properties = properties

    def dispatch(
        self,
        records: Sequence[Record],
        selections: Mapping[str, Selection],
        receipts: Sequence[str] = (),
        batch_id: str | None = None,
    ) -> str:
        """Store ``records`` and send them as one chord to the handler tasks named in ``selections``.

        Returns the batch id (``batch_id``, or a new one) once the broker has accepted the chord.
        """
        batch_id = batch_id or uuid.uuid4().hex
        header = [sig for name, sel in selections.items() for sig in self._signatures(batch_id, name, records, sel)]
        for sig in header:
            sig.freeze()  # fix each task's id now: the record names it, and we unsubscribe from it
        body_id = str(uuid.uuid4()) if header else None
        store = self._store
        if header:
            store.put_events(batch_id, list(records))
        store.start(batch_id, len(records), {sig.args[2]: self._task_ref(sig) for sig in header}, receipts, body_id)
        if body_id is None:  # no handler task: nothing to wait for
            store.finish(batch_id, [])
            return batch_id
        self.send_chord(batch_id, header, body_id)
        return batch_id

    def send_chord(self, batch_id: str, header: Sequence[Signature], body_id: str) -> None:
        """Send frozen handler task signatures of a batch as a chord whose ``batch.record`` has ``body_id``."""
        body = self._celery.signature(RECORD_BATCH_TASK, kwargs={"batch_id": batch_id})
        chord(list(header), body).apply_async(task_id=body_id)
        self.stop_listening(header)

    def handler_signature(self, batch_id: str, label: str, ref: TaskRef) -> Signature:
        """A frozen signature sending the task of ``label`` (as a batch record names it) again, with a new id."""
        sig = self._celery.signature(ref["task"], args=(batch_id, ref["indices"], label)).set(queue=ref["queue"])
        sig.freeze()
        return sig

    def record_signature(self, batch_id: str) -> Signature:
        """A frozen ``batch.record`` of a batch with no outcomes (it reads the ones its handler tasks kept)."""
        body = self._celery.signature(RECORD_BATCH_TASK, args=([],), kwargs={"batch_id": batch_id})
        body.freeze()
        return body

    def record_queue(self) -> str:
        """The queue ``batch.record`` tasks are sent to."""
        return str(self._celery.amqp.router.route({}, RECORD_BATCH_TASK)["queue"].name)

    def _task_ref(self, sig: Signature) -> TaskRef:
        """What a batch record keeps of one frozen handler task: enough to find and to send it again."""
        route = self._celery.amqp.router.route(dict(sig.options), sig.task, sig.args, sig.kwargs)
        return {"id": sig.id, "task": sig.task, "indices": sig.args[1], "queue": route["queue"].name}

    def stop_listening(self, sent: Sequence[Signature]) -> None:
        """Unsubscribe from the results of tasks sent (a chord's header), which nobody here waits for.

        The Redis backend subscribes to them while building the chord's group result (whose
        clean-up waits for a garbage collection), so subscriptions pile up in a process that
        dispatches all day, the batcher (celery#5320).
        """
        consumer = getattr(self._celery.backend, "result_consumer", None)
        if consumer is not None:
            for sig in sent:
                consumer.cancel_for(sig.id)

    def _signatures(self, batch_id: str, name: str, records: Sequence[Record], selection: Selection) -> list[Signature]:
        spec = self._handler_spec(name)
        by = spec.shard_by
        if by is None:
            return [self._celery.signature(name, args=(batch_id, selection, name))]
        one_shard = spec.options.get("single_process", False)  # every event to shard 0: one process, in order
        count, queues = self._settings.shards, self._settings.queues
        shards: dict[int, list[int]] = {}
        for index in range(len(records)) if selection is None else selection:
            if one_shard:
                shard = 0
            else:  # the batcher leaves the raw event out (None) when it has the event's JSON only
                event = records[index][2]
                shard = shard_of(json.loads(records[index][3]) if event is None else event, by, count, self._properties)
            shards.setdefault(shard, []).append(index)
        return [
            self._celery.signature(name, args=(batch_id, indices, f"{name}#{by}.{shard}")).set(
                queue=shard_queue(queues, by, shard)
            )
            for shard, indices in sorted(shards.items())
        ]


def select_all(handlers: Sequence[str]) -> dict[str, Any]:
    """A selection sending every event of a batch to each of ``handlers``."""
    return dict.fromkeys(handlers)
