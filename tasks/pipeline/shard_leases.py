"""Exactly one active consumer per shard queue, cluster-wide, on a Redis broker.

Any number of shard workers (``-P solo``) may be started for the same shard queues, on any
hosts. Each holds a lease per shard queue it may consume (``Keys.lease("queue:<name>")``,
``INSIGHTS_LEASE_TTL``); a heartbeat thread renews the leases it holds and, as a standby,
takes the ones that are free. The worker consumes a shard queue only while it holds its
lease: a consumer bootstep (``ShardLeaseStep``) stops consuming every shard queue at start
and, in the worker's own event loop, starts or cancels each as its lease is won or lost.

When a worker takes a lease that expired (its holder died or froze), the messages the old
holder had taken from that queue and not acknowledged (kombu's ``unacked`` hash) go back to
the head of the queue (the list of their priority) before the new holder consumes it, so the
batch that was being handled runs again first, instead of after the visibility timeout behind
later batches. One script moves each message, and only if it is still unacknowledged: kombu
restoring it meanwhile (the old holder's channel closing, its visibility-timeout sweep) or
the old holder acknowledging it leaves it alone. A worker that takes again a lease it let
lapse (nobody else held it meanwhile, as far as its heartbeat saw) restores nothing: the
unacknowledged messages of the queue are its own, in hand.

Fencing: a stale holder (paused longer than the lease, then woken) may still have a message
in hand. Right before a shard task runs, ``fence`` checks the lease in Redis; a worker that
no longer holds it puts the message back at the head of its queue, stops consuming the queue
and skips the task without recording a result (``Ignore``), so the holder runs it.

On RabbitMQ none of this runs: shard queues are declared with ``x-single-active-consumer``
(config/queues.py) and the broker itself delivers to one consumer at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import redis
from celery import bootsteps, current_task
from celery.exceptions import Ignore

from config.queues import shard_queues
from tasks.pipeline.handling import HandlerRun, HandlerStep, Outcome
from tasks.pipeline.kombu_layout import KombuRedisLayout
from tasks.storage.lease import Lease, Taken, holder_id

if TYPE_CHECKING:
    from tasks.app import Insights

log = logging.getLogger(__name__)

RECONCILE_EVERY = 0.2  # seconds between the event loop's looks at which leases are held

# Back to the head of their queue the messages still unacknowledged, oldest last (kombu pops from
# the right). KEYS[1] the unacked hash, KEYS[2] its index, KEYS[2 + i] the list of message i;
# ARGV[2i - 1] its delivery tag, ARGV[2i] the message. A message kombu restored or that was
# acknowledged meanwhile is no longer in the hash: skipped.
_RESTORE = """
local restored = 0
for i = 1, #KEYS - 2 do
  local tag = ARGV[2 * i - 1]
  if redis.call('HDEL', KEYS[1], tag) == 1 then
    redis.call('ZREM', KEYS[2], tag)
    redis.call('RPUSH', KEYS[2 + i], ARGV[2 * i])
    restored = restored + 1
  end
end
return restored
"""


class ShardLeases:
    """The leases of one worker process over the shard queues it was started for."""

    def __init__(self, client: redis.Redis, broker: redis.Redis, insights: Insights, queues: Iterable[str]) -> None:
        self.owner = holder_id()
        self.ttl = insights.settings.lease_ttl
        self.leases = {q: Lease(client, insights.keys.lease(f"queue:{q}"), self.owner, self.ttl) for q in queues}
        self.broker = broker
        self.layout = KombuRedisLayout.from_options(insights.celery.conf.broker_transport_options)
        self._held: set[str] = set()
        self._mine: set[str] = set()  # queues whose lease nobody else held since this worker last did
        self._restore = broker.register_script(_RESTORE)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def queues(self) -> set[str]:
        """The shard queues this worker competes for."""
        return set(self.leases)

    def held(self) -> set[str]:
        """The shard queues whose lease this worker held at its last heartbeat."""
        with self._lock:
            return set(self._held)

    def beat(self) -> None:
        """One heartbeat: renew the leases held, take the free ones (restoring what their last
        holder left unacknowledged), drop the ones lost."""
        for queue, lease in self.leases.items():
            try:
                taken = lease.take()
                if taken is Taken.TAKEN and queue in self._mine:
                    log.warning("shard lease of %s taken again by %s after it lapsed", queue, self.owner)
                elif taken is Taken.TAKEN:
                    restored = self.restore_unacked(queue)
                    log.warning(
                        "shard lease of %s taken by %s%s",
                        queue,
                        self.owner,
                        f"; {restored} unacknowledged message(s) of its last holder back at its head"
                        if restored
                        else "",
                    )
            except redis.RedisError as exc:  # cannot tell: act as if lost, the holder's fencing does the rest
                log.error("shard lease of %s: %s; not consuming it until Redis answers", queue, exc)
                with self._lock:
                    self._held.discard(queue)  # stays ``_mine``: nobody else was seen holding it
                continue
            with self._lock:
                if taken is Taken.OTHER:
                    if queue in self._held:
                        log.warning("shard lease of %s lost by %s: stopping its consumption", queue, self.owner)
                    self._held.discard(queue)
                    self._mine.discard(queue)
                else:
                    self._held.add(queue)
                    self._mine.add(queue)

    def restore_unacked(self, queue: str) -> int:
        """Put the messages of ``queue`` that a previous holder took and never acknowledged back at
        the head of the queue's list of their priority, oldest delivery first; returns how many.
        A message restored by kombu or acknowledged while this runs is not touched (``_RESTORE``)."""
        found = []
        for tag, raw in self.broker.hgetall(self.layout.unacked).items():
            try:
                payload, _exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            if routing_key == queue and isinstance(payload, dict):
                found.append((tag, payload))
        if not found:
            return 0
        pipe = self.broker.pipeline(transaction=False)
        for tag, _ in found:
            pipe.zscore(self.layout.unacked_index, tag)
        scores = [score or 0.0 for score in pipe.execute()]
        keys: list[str] = [self.layout.unacked, self.layout.unacked_index]
        args: list[Any] = []
        # kombu consumes a queue's lists from the right: push the latest first, the oldest last.
        for _, (tag, payload) in sorted(zip(scores, found, strict=True), key=lambda item: item[0], reverse=True):
            payload.setdefault("headers", {})["redelivered"] = True
            with contextlib.suppress(KeyError, TypeError):
                payload["properties"]["delivery_info"]["redelivered"] = True
            keys.append(self.layout.queue_key(queue, self.layout.message_priority(payload)))
            args += [tag, json.dumps(payload)]
        return int(self._restore(keys=keys, args=args))

    def owns(self, queue: str) -> bool:
        """The fencing check: whether this worker holds ``queue``'s lease now (asks Redis)."""
        lease = self.leases.get(queue)
        return lease is not None and lease.held()

    def lost(self, queue: str) -> None:
        """Forget a lease found lost between heartbeats (another may have held it since)."""
        with self._lock:
            self._held.discard(queue)
            self._mine.discard(queue)

    def start(self) -> None:
        """Take what is free now, then keep the leases from a heartbeat thread (every quarter TTL)."""
        self.beat()
        self._thread = threading.Thread(target=self._run, name="shard-leases", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.beat()
            except Exception:  # the heartbeat must go on; fencing guards the tasks meanwhile
                log.exception("shard lease heartbeat failed")

    def stop(self) -> None:
        """Stop the heartbeat and give every lease up, so standbys take over at their next poll."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._held.clear()
            self._mine.clear()
        for lease in self.leases.values():
            with contextlib.suppress(redis.RedisError):  # else it expires by itself
                lease.release()


def lease_step(insights: Insights) -> type[bootsteps.StartStopStep]:
    """The consumer bootstep that makes a worker consume a shard queue only while holding its lease."""

    class ShardLeaseStep(bootsteps.StartStopStep):
        """Consume each shard queue only while holding its lease (Redis brokers)."""

        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, c: Any, **kwargs: Any) -> None:
            self.leases: ShardLeases | None = None
            self.timer: Any = None

        def start(self, c: Any) -> None:
            broker = insights.services.broker_redis
            all_shards = set(shard_queues(insights.settings.queues, insights.settings.shards))
            mine = sorted(q.name for q in c.task_consumer.queues if q.name in all_shards)
            if broker is None or not mine:
                return
            for queue in mine:  # consumed only once leased
                c.cancel_task_queue(queue)
            if not type(c.pool).__module__.endswith(".solo"):
                log.error(
                    "shard queues %s need a single-process worker (-P solo) to keep their order: "
                    "this worker does not consume them",
                    ", ".join(mine),
                )
                return
            self.leases = ShardLeases(insights.services.redis, broker, insights, mine)
            insights.shard_leases = self.leases
            self.leases.start()
            self._reconcile(c)
            self.timer = c.timer.call_repeatedly(RECONCILE_EVERY, self._reconcile, (c,), priority=10)

        def _reconcile(self, c: Any) -> None:
            """In the event loop: consume exactly the shard queues whose lease is held."""
            if self.leases is None:
                return
            consuming = {q.name for q in c.task_consumer.queues} & self.leases.queues
            held = self.leases.held()
            for queue in sorted(held - consuming):
                c.add_task_queue(queue)
            for queue in sorted(consuming - held):
                c.cancel_task_queue(queue)

        def stop(self, c: Any) -> None:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if self.leases is not None:
                self.leases.stop()
                insights.shard_leases = None
                self.leases = None

        shutdown = stop

    return ShardLeaseStep


def fencing(leases_of: Callable[[], ShardLeases | None]) -> HandlerStep:
    """A handler-task step: a shard task runs only in the worker holding its shard queue's lease
    (``leases_of()``, None outside a shard worker on a Redis broker)."""

    def step(run: HandlerRun, next: Callable[[HandlerRun], Outcome]) -> Outcome:
        if run.spec.shard_by is not None and current_task:  # in a task: the queue its message came from
            fence(leases_of(), (current_task.request.delivery_info or {}).get("routing_key"))
        return next(run)

    return step


def fence(leases: ShardLeases | None, queue: str | None) -> None:
    """Before a shard task runs: return if this worker may run a task of ``queue``; else put the
    message back at the head of the queue, stop consuming it and raise ``Ignore`` (no result is
    recorded, so the task's chord waits for the holder to run it)."""
    if leases is None or queue is None or queue not in leases.queues or leases.owns(queue):
        return
    leases.lost(queue)
    log.warning("shard task of %s refused: %s no longer holds its lease; back to the queue", queue, leases.owner)
    _requeue_current_at_head()
    raise Ignore()


def _requeue_current_at_head() -> None:
    """Give the message of the task running in this (solo) worker back to the head of its queue."""
    from celery import current_task
    from celery.worker import state

    task_id = current_task.request.id if current_task else None
    for request in list(state.active_requests):
        if request.id == task_id:
            message = request.message
            message.channel.qos.restore_by_tag(message.delivery_tag, leftmost=False)
            return
