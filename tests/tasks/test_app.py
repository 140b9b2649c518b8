"""The application object: tasks bound per function, routing, results across processes, dispatch."""

from __future__ import annotations

import dataclasses
import os
import uuid

import numpy as np
import pandas as pd

from config.settings import Settings
from tasks.app import RECORD_BATCH_TASK, Insights, create_insights
from tests.conftest import Pipeline, wait_for

TIMEOUT = 20


def run_task(insights: Insights, name: str, *args: object, **kwargs: object) -> object:
    """Send a task, wait for its result and release the result's subscription."""
    result = insights.celery.tasks[name].apply_async(args=args, kwargs=kwargs)
    try:
        return result.get(timeout=TIMEOUT)
    finally:
        result.forget()


def test_every_function_is_a_task_with_a_readable_name(insights: Insights) -> None:
    names = set(insights.celery.tasks)
    assert {"view.djt_fake_user_count", "query.djt_event_count", "query.grades_array", RECORD_BATCH_TASK} <= names
    assert "handler.testmodule.djt_event_count_event" in names
    assert insights.celery.tasks["query.djt_event_count"].__doc__.startswith("Number of events")


def test_tasks_are_routed_to_their_kind_queue_or_the_one_their_decorator_names(insights: Insights) -> None:
    def queue_of(task_name: str) -> str:
        return insights.celery.amqp.router.route({}, task_name)["queue"].name

    assert queue_of("view.djt_fake_user_count") == "views"
    assert queue_of("query.djt_event_count") == "queries"
    assert queue_of("handler.testmodule.djt_cache_set") == "events"
    assert queue_of(RECORD_BATCH_TASK) == "events"
    assert queue_of("query.on_reports_queue") == "reports"


def test_numpy_and_pandas_results_cross_the_result_backend_intact(insights: Insights, worker: Pipeline) -> None:
    array = run_task(insights, "query.grades_array", course="ab")
    assert isinstance(array, np.ndarray) and array.dtype == np.int64
    np.testing.assert_array_equal(array, np.arange(6).reshape(2, 3) + 2)
    frame = run_task(insights, "query.grades_frame", "c")
    assert isinstance(frame, pd.DataFrame)
    assert frame["when"].dtype.kind == "M" and np.isnan(frame["grade"][1])


def test_a_task_runs_a_query_by_any_alias_with_positional_arguments(insights: Insights, worker: Pipeline) -> None:
    assert run_task(insights, "query.djt_user_event_count", f"nobody-{uuid.uuid4().hex}") == 0
    assert insights.queries["edx.djt_three_name"]() == "I have three names"


def test_a_batch_with_no_handlers_is_recorded_done_at_once(settings: Settings) -> None:
    bare = create_insights(dataclasses.replace(settings, module_packages=("tests.sample_modules.datatypes",)))
    batch_id = bare.dispatch_events([{"a": 1}])
    record = bare.store.get(batch_id)
    assert record is not None
    assert (record["state"], record["handlers"], record["failed"]) == ("done", {}, [])


def test_the_batch_record_starts_pending_and_lists_every_handler(insights: Insights, worker: Pipeline) -> None:
    batch_id = insights.dispatch_events([{"user": "pending-check"}])
    record = wait_for(lambda: insights.store.get(batch_id), what="the batch record")
    assert {label.split("#")[0] for label in record["handlers"]} == set(insights.handler_names())
    assert "handler.pipeline.in_order#user." in " ".join(record["handlers"])  # an ordered handler runs per shard
    done = wait_for(lambda: (r := insights.store.get(batch_id)) and r["state"] == "done" and r, what="batch done")
    assert done["events"] == 1 and done["failed"] == []


def test_a_handler_step_added_before_finalize_is_kept_in_a_forked_worker_child(settings: Settings) -> None:
    app = Insights(settings)

    def traced(run: object, next: object) -> object:
        return next(run)  # type: ignore[operator]

    app.handler_steps.append(traced)
    app.finalize()
    assert traced in app.handler_tasks.steps
    child = os.fork()  # as a prefork pool makes its children: stores are built again there
    if child == 0:
        os._exit(0 if traced in app.handler_tasks.steps else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the step was lost in the forked child"
