"""The Insights application: settings, registry, services and the Celery app, bound together."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.canvas import Signature

from config.celery import celery_config
from config.queues import default_queue
from config.settings import Settings
from tasks.authoring.event_ids import event_id
from tasks.authoring.events import Event, Property
from tasks.authoring.injection import bind_arguments, injected_names
from tasks.authoring.render import running_module
from tasks.codec.serialization import register_kombu_serializer
from tasks.core.callers import Caller
from tasks.core.compose import Stage, compose
from tasks.core.kombu_fix import tolerate_collected_redis_transport
from tasks.core.memo import Memo, memo_policy, split_mode
from tasks.core.registry import Registry, Spec
from tasks.core.remote import RemoteBackend
from tasks.core.runs import Runs
from tasks.core.steps import Call, Step, feed, memoize, present, through
from tasks.core.tokens import TokenStore
from tasks.errors import ArgumentError, CacheMiss
from tasks.pipeline.batch_store import BatchStore
from tasks.pipeline.conflicts import Conflicts
from tasks.pipeline.dead_letters import DeadLetters
from tasks.pipeline.dispatch import RECORD_BATCH_TASK, Dispatcher, select_all
from tasks.pipeline.handling import HandlerRun, HandlerStep, HandlerTasks, Retries, remember_outcome
from tasks.pipeline.kombu_layout import KombuRedisLayout
from tasks.pipeline.redrive import Redriver
from tasks.pipeline.shard_leases import ShardLeases, fencing, lease_step
from tasks.pipeline.stream import Intake
from tasks.schedule import bind_schedule, list_reports
from tasks.storage.keys import Keys
from tasks.storage.services import Services, running_services

if TYPE_CHECKING:
    from tasks.core.functions import Backend

log = logging.getLogger(__name__)

__all__ = ["RECORD_BATCH_TASK", "Insights", "create_insights"]


class Insights:
    """One deployment: loads analytics modules and runs each of their functions as a Celery task."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        register_kombu_serializer()  # idempotent: the codec every message of this app uses
        self.settings = settings
        self.registry = registry if registry is not None else Registry()
        self.services = Services(settings)
        self.celery = Celery("insights", set_as_current=False)
        # Backends the ``query``/``view`` objects fall back to for names this registry lacks: a
        # module may call a query on another server. One per server of INSIGHTS_REMOTES, in order.
        self.remotes: list[Backend] = [
            RemoteBackend(r.url, r.token, max_response_bytes=settings.max_request_bytes) for r in settings.remotes
        ]
        self.queries = Caller("query", self.registry, self.call, lambda: self.remotes)
        self.views = Caller("view", self.registry, self.call, lambda: self.remotes)
        self.properties: dict[str, Property] = {}
        # Set in a shard worker on a Redis broker while its lease bootstep runs (tasks/pipeline/shard_leases.py).
        self.shard_leases: ShardLeases | None = None
        self.finalized = False
        # What every call goes through (tasks/core/steps.py): a new concern is a new step, added before finalize().
        self.call_steps: list[Step] = [memoize(lambda: self.memo)]
        self.task_steps: list[Step] = [feed, present(self.services.fs), *self.call_steps]
        self.handler_steps: list[HandlerStep] = [
            fencing(lambda: self.shard_leases),
            remember_outcome(lambda: self.services.redis, self.keys, settings.batch_record_ttl),
        ]

    @property
    def keys(self) -> Keys:
        """The names of this deployment's Redis keys (under ``INSIGHTS_REDIS_PREFIX``)."""
        return self.services.keys

    @property
    def store(self) -> BatchStore:
        """Events, records and receipts of batches."""
        ttl, done_ttl = self.settings.batch_record_ttl, self.settings.finished_batch_ttl
        return self.services.once("store", lambda: BatchStore(self.services.redis, ttl, self.keys, done_ttl))

    @property
    def memo(self) -> Memo:
        """Cached results of memoized queries."""
        return self.services.once("memo", lambda: Memo(self.services.redis, self.keys))

    @property
    def intake(self) -> Intake:
        """The durable intake stream the web app appends accepted events to and batchers read."""
        return self.services.once(
            "intake", lambda: Intake(self.services.redis, self.keys.intake_stream, self.keys.intake_unreadable)
        )

    @property
    def runs(self) -> Runs:
        """Runs started over HTTP without waiting, by client."""
        return self.services.once("runs", lambda: Runs(self.services.redis, self.settings.run_expires, self.keys))

    @property
    def dead_letters(self) -> DeadLetters:
        """Events handlers failed on after every retry."""
        return self.services.once(
            "dead_letters", lambda: DeadLetters(self.services.redis, self.settings.deadletter_max, self.keys)
        )

    @property
    def dispatcher(self) -> Dispatcher:
        """What sends batches to handler tasks as chords."""
        return self.services.once(
            "dispatcher",
            lambda: Dispatcher(self.celery, self.store, self.settings, self.handler_spec, self.properties),
        )

    def redriver(self, after: float | None = None) -> Redriver:
        """What sends again the task messages the broker lost (after ``after`` seconds unfinished,
        ``INSIGHTS_REDRIVE_AFTER`` by default)."""
        return Redriver(
            self.store,
            self.dispatcher,
            self.dead_letters,
            self.services.broker_redis,
            KombuRedisLayout.from_options(self.celery.conf.broker_transport_options),
            self.settings.redrive_after if after is None else after,
        )

    @property
    def handler_tasks(self) -> HandlerTasks:
        """What runs handler tasks: through ``handler_steps``, with retries, poison events dead-lettered."""

        def build() -> HandlerTasks:
            return HandlerTasks(
                self.handler_steps,
                self.store,
                self.dead_letters,
                lambda spec, kwargs: self.call(spec, (), kwargs),
                self.event,
                Retries(self.settings.handler_attempts, self.settings.handler_backoff),
            )

        return self.services.once("handler_tasks", build)

    @property
    def tokens(self) -> TokenStore:
        """API tokens and their policies."""
        return self.services.once("tokens", lambda: TokenStore(self.services.redis, self.keys))

    @property
    def conflicts(self) -> Conflicts:
        """Events that arrived under a known id but differ from the event on record."""
        return self.services.once(
            "conflicts", lambda: Conflicts(self.services.redis, self.settings.conflicts_max, self.keys)
        )

    # Set-up -------------------------------------------------------------------------
    def load_modules(self) -> list[str]:
        """Import every configured analytics module and register what it declares."""
        return self.registry.discover(self.settings.module_packages, self.settings.exclude_modules)

    def finalize(self) -> Insights:
        """Bind every registered function to a Celery task, configure Celery, freeze the registry."""
        if self.finalized:
            return self
        overrides = {spec.task_name: spec.queue for spec in self.registry if spec.queue}
        self.celery.conf.update(celery_config(self.settings, overrides))
        for kind in ("view", "query", "handler"):
            for spec in self.registry.specs(kind):
                self._bind(spec.task_name, self._task_body(spec))

        def record(outcomes: list[dict[str, Any]], batch_id: str) -> None:
            """Record which handlers of a batch succeeded."""
            self.record_batch(outcomes, batch_id)

        self._bind(RECORD_BATCH_TASK, record)
        for name in self.registry.names("property"):  # in place: the dispatcher holds this mapping
            self.properties[name] = self.registry.get("property", name).func
        # Shard workers consume a shard queue only while holding its lease (Redis brokers).
        self.celery.steps["consumer"].add(lease_step(self))
        bind_schedule(self)  # @cron jobs, the file-store sweeper and beat's schedule (tasks/schedule.py)
        self.registry.freeze()
        self.finalized = True
        return self

    def _bind(self, name: str, body: Callable[..., Any]) -> None:
        self.celery.task(name=name, shared=False, typing=False)(body)

    def _task_body(self, spec: Spec) -> Callable[..., Any]:
        """The function a spec's Celery task runs: the handler wrapper, or the call through ``task_steps``."""
        if spec.kind == "handler":

            def run(batch_id: str, indices: list[int] | None, label: str) -> dict[str, Any]:
                return self.run_handler(spec, batch_id, indices, label)

        else:
            call = through(self.task_steps, self._invoke)

            def run(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                return call(Call(spec, args, kwargs))

        run.__name__ = spec.func.__name__
        run.__doc__ = spec.doc
        return run

    def compose(self, stages: Sequence[Stage]) -> Signature:
        """A Celery canvas running queries and views in order, each result fed to the next (tasks/core/compose.py)."""
        return compose(self.celery, self.registry, self.settings, stages)

    def reports(self, module: str | None = None) -> list[dict[str, Any]]:
        """Reports the ``@cron`` jobs of every module (or one) wrote, newest first (tasks/schedule.py)."""
        return list_reports(self, module)

    def queue_of(self, spec: Spec) -> str:
        """The queue a view, query or handler task is sent to."""
        return spec.queue or default_queue(spec.kind, self.settings.queues)

    # Running functions --------------------------------------------------------------
    def call(self, spec: Spec, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> Any:
        """Run a registered function in this process, with its module's injections (through ``call_steps``:
        memoized ones via the cache)."""
        return through(self.call_steps, self._invoke)(Call(spec, args, kwargs or {}))

    def cached_result(self, spec: Spec, arguments: dict[str, Any]) -> tuple[bool, Any]:
        """For a memoized query called with ``arguments``: (True, cached result) or (False, None).

        Raises ``CacheMiss`` for a cache-only call (``_memo=cached``) with nothing cached.
        """
        policy = memo_policy(spec.func)
        if policy is None:
            return False, None
        mode, arguments = split_mode(arguments)
        if mode not in ("use", "cached"):
            return False, None
        hit, value = self.memo.lookup(self.memo.key_of(spec, (), arguments, policy))
        if mode == "cached" and not hit:
            raise CacheMiss(f"{spec.label} has no cached result for these arguments; call it without _memo=cached")
        return hit, value

    def fresh_result(self, spec: Spec, arguments: dict[str, Any]) -> bool:
        """Whether a memoized query has a result for ``arguments`` computed less than
        ``INSIGHTS_MEMO_MIN_REFRESH`` seconds ago (an outside refresh then serves it instead)."""
        policy = memo_policy(spec.func)
        if policy is None:
            return False
        age = self.memo.age(self.memo.key_of(spec, (), split_mode(arguments)[1], policy), policy)
        return age is not None and age < self.settings.memo_min_refresh

    def _invoke(self, call: Call) -> Any:
        """The last step: bind the arguments, inject what the function asks for, call it in its module."""
        spec = call.spec
        bound, leftovers = bind_arguments(spec.label, spec.func, call.args, call.kwargs)
        injected = {name: self._inject(name, spec, leftovers) for name in injected_names(spec.func)}
        extra = {} if "params" in injected else leftovers
        with (
            running_module(spec.module, self.registry.module_folder(spec.module)),
            running_services(self.services, self.registry.module_named),
        ):
            return spec.func(**bound, **injected, **extra)

    def _inject(self, name: str, spec: Spec, leftovers: dict[str, Any]) -> Any:
        if name == "params":
            return dict(leftovers)
        if name == "query":
            return self.queries
        if name == "view":
            return self.views
        return getattr(self.services, name)(spec.module)

    def event(self, raw: dict[str, Any], id: str | None = None, received: float | None = None) -> Event:
        """Wrap a raw event dict with the registered event properties."""
        return Event(raw, self.properties, id, received)

    def handler_names(self) -> list[str]:
        """Task names of every registered event handler."""
        return [spec.task_name for spec in self.registry.specs("handler")]

    def resolve_handlers(self, names: Sequence[str]) -> list[str]:
        """Handler task names for names given as task names, ``module.function`` or ``function``."""
        known = self.handler_names()
        resolved = []
        for name in names:
            matches = [t for t in known if t == name or t.endswith("." + name)]
            if len(matches) != 1:
                problem = "matches several handlers" if matches else "is not a registered handler"
                raise ArgumentError(f"{name!r} {problem}; handlers: {', '.join(known)}")
            resolved.append(matches[0])
        return resolved

    def handler_spec(self, task_name: str) -> Spec:
        """The handler registered under a task name."""
        return self.registry.get("handler", task_name)

    def run_handler(self, spec: Spec, batch_id: str, indices: list[int] | None, label: str) -> dict[str, Any]:
        """Run one handler task of a batch; never raises: returns the outcome for the batch record."""
        return self.handler_tasks.run(HandlerRun(spec, batch_id, indices, label))

    def record_batch(self, outcomes: list[dict[str, Any]], batch_id: str) -> None:
        """Chord callback: store every handler task's outcome for the batch."""
        record = self.store.finish(batch_id, outcomes)
        if record["failed"]:
            log.warning("batch %s: handlers failed: %s", batch_id, ", ".join(record["failed"]))

    # Dispatch -----------------------------------------------------------------------
    def dispatch_events(self, raw_events: Sequence[dict[str, Any]], handlers: Sequence[str] | None = None) -> str:
        """Send events straight to handlers (all by default) as one chord, without dedupe; returns the batch id.

        The events' ids are derived in the anonymous scope, from their content when they carry no id.
        """
        now = time.time()
        records = [[event_id(raw), now, raw] for raw in raw_events]
        names = handlers if handlers is not None else self.handler_names()
        return self.dispatcher.dispatch(records, select_all(names))


def create_insights(settings: Settings | None = None, *, load_modules: bool = True) -> Insights:
    """An Insights application for ``settings`` (default: from the environment), modules loaded and
    bound; the process's broker transport made to survive a Redis restart (tasks/core/kombu_fix.py)."""
    tolerate_collected_redis_transport()
    insights = Insights(settings if settings is not None else Settings.from_env())
    if load_modules:
        insights.load_modules()
    return insights.finalize()
