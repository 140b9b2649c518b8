"""The Insights application: settings, registry, services and the Celery app, bound together."""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery, chord, group

from config.celery import celery_config
from config.queues import default_queue
from config.settings import Settings
from tasks.batches import BatchRecords
from tasks.callers import Caller
from tasks.events import Event, Property
from tasks.inject import bind_arguments, injected_names
from tasks.registry import Registry, Spec
from tasks.serialization import register_kombu_serializer
from tasks.services import Services

log = logging.getLogger(__name__)

RECORD_BATCH_TASK = "batch.record"


class Insights:
    """One deployment: loads analytics modules and runs each of their functions as a Celery task."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        register_kombu_serializer()
        self.settings = settings
        self.registry = registry if registry is not None else Registry()
        self.services = Services(settings)
        self.celery = Celery("insights", set_as_current=False)
        self.queries = Caller("query", self.registry, self.call)
        self.views = Caller("view", self.registry, self.call)
        self.properties: dict[str, Property] = {}
        self.finalized = False

    @property
    def batches(self) -> BatchRecords:
        """Records of dispatched event batches."""
        return BatchRecords(self.services.redis, self.settings.batch_record_ttl)

    # Set-up -------------------------------------------------------------------------
    def load_modules(self) -> list[str]:
        """Import every configured analytics module and register what it declares."""
        return self.registry.discover(self.settings.module_packages)

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
        self.properties = {name: self.registry.get("property", name).func for name in self.registry.names("property")}
        self.registry.freeze()
        self.finalized = True
        return self

    def _bind(self, name: str, body: Callable[..., Any]) -> None:
        self.celery.task(name=name, shared=False, typing=False)(body)

    def _task_body(self, spec: Spec) -> Callable[..., Any]:
        """The function a spec's Celery task runs: the handler wrapper, or the injected call."""
        if spec.kind == "handler":

            def run(events: list[dict[str, Any]]) -> dict[str, Any]:
                return self.run_handler(spec, events)

        else:

            def run(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                return self.call(spec, args, kwargs)

        run.__name__ = spec.func.__name__
        run.__doc__ = spec.doc
        return run

    def queue_of(self, spec: Spec) -> str:
        """The queue a view, query or handler task is sent to."""
        return spec.queue or default_queue(spec.kind, self.settings.queues)

    # Running functions --------------------------------------------------------------
    def call(self, spec: Spec, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        """Run a registered function in this process, with its module's injections."""
        bound, leftovers = bind_arguments(spec.label, spec.func, args, kwargs or {})
        injected = {name: self._inject(name, spec, leftovers) for name in injected_names(spec.func)}
        extra = {} if "params" in injected else leftovers
        return spec.func(**bound, **injected, **extra)

    def _inject(self, name: str, spec: Spec, leftovers: dict[str, Any]) -> Any:
        if name == "params":
            return dict(leftovers)
        if name == "query":
            return self.queries
        if name == "view":
            return self.views
        return getattr(self.services, name)(spec.module)

    def event(self, raw: dict[str, Any]) -> Event:
        """Wrap a raw event dict with the registered event properties."""
        return Event(raw, self.properties)

    def run_handler(self, spec: Spec, raw_events: list[dict[str, Any]]) -> dict[str, Any]:
        """Run one handler on a batch; never raises, returns the outcome for the batch record.

        The outcome is deterministic (no timings): a redelivered chord member must return the
        same result as its first run.
        """
        try:
            self.call(spec, (), {"events": [self.event(raw) for raw in raw_events]})
        except Exception as exc:
            log.exception("%s failed on a batch of %d events", spec.label, len(raw_events))
            return {
                "handler": spec.task_name,
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        return {"handler": spec.task_name, "ok": True, "error": None}

    def record_batch(self, outcomes: list[dict[str, Any]], batch_id: str) -> None:
        """Chord callback: store every handler's outcome for the batch."""
        record = self.batches.finish(batch_id, outcomes)
        if record["failed"]:
            log.warning("batch %s: handlers failed: %s", batch_id, ", ".join(record["failed"]))

    # Dispatch -----------------------------------------------------------------------
    def dispatch_events(self, raw_events: list[dict[str, Any]]) -> str:
        """Send a batch to every handler as one chord; returns the batch id once the broker has it."""
        batch_id = uuid.uuid4().hex
        handlers = [spec.task_name for spec in self.registry.specs("handler")]
        self.batches.start(batch_id, len(raw_events), handlers)
        if not handlers:
            self.record_batch([], batch_id)
            return batch_id
        header = group(self.celery.signature(name, args=(raw_events,)) for name in handlers)
        body = self.celery.signature(RECORD_BATCH_TASK, kwargs={"batch_id": batch_id}, immutable=False)
        chord(header, body).apply_async(task_id=batch_id)
        return batch_id


def create_insights(settings: Settings | None = None, *, load_modules: bool = True) -> Insights:
    """An Insights application for ``settings`` (default: from the environment), modules loaded and bound."""
    insights = Insights(settings if settings is not None else Settings.from_env())
    if load_modules:
        insights.load_modules()
    return insights.finalize()
