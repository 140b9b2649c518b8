"""HTTP API: views, queries, schema, event properties, module files."""

from __future__ import annotations

import dataclasses
from pathlib import PurePosixPath
from typing import Any

from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult
from celery.states import READY_STATES, SUCCESS
from flask import Blueprint, Response, current_app, g, jsonify, render_template, request
from kombu.exceptions import OperationalError

from tasks.app import Insights
from tasks.authoring.injection import bind_arguments
from tasks.codec.json_shape import MAX_DEPTH, too_deep
from tasks.codec.serialization import dumps_plain
from tasks.core.checks import check_arguments
from tasks.core.compose import Stage, Step, failed_step, parse_steps
from tasks.core.memo import MODE_ARGUMENT, memo_policy, split_mode
from tasks.core.policy import accepted_arguments
from tasks.core.registry import Spec, public
from tasks.errors import ArgumentError
from web.errors import ApiError
from web.files import file_response
from web.limits import charge, client_name

api = Blueprint("api", __name__)

# The only files /fs serves inline, by extension: images that cannot carry scripts.
INLINE_IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


def insights() -> Insights:
    """The Insights application this web app serves."""
    app: Insights = current_app.extensions["insights"]
    return app


@api.route("/view/<name>", methods=["GET", "POST"])
def run_view(name: str) -> Response:
    """Run a view on a worker and answer its HTML."""
    result = _run("view", name)
    if isinstance(result, str):
        return Response(result, mimetype="text/html")
    return _json(result)


@api.route("/query/<name>", methods=["GET", "POST"])
def run_query(name: str) -> Response:
    """Run a query on a worker and answer its data: text as is, anything else as JSON."""
    result = _run("query", name)
    if isinstance(result, str):
        return Response(result, mimetype="text/plain")
    return _json(result)


@api.get("/schema")
def schema() -> Any:
    """Every view, query and event handler with its category, parameters (type, default) and doc
    (``?f=html`` for a page); private names (``_…``) are left out, as every route refuses them."""
    app = insights()
    specs = [spec for kind in ("view", "query", "handler") for spec in app.registry.specs(kind) if public(spec)]
    entries = []
    for spec in specs:
        entry = {**spec.describe(), "queue": app.queue_of(spec)}
        entry["aliases"] = [alias for alias in entry["aliases"] if not alias.startswith("_")]
        entries.append(entry)
    if request.args.get("f") == "html":
        return render_template("schema.html", entries=entries)
    return jsonify(entries)


@api.get("/event_properties")
def event_properties() -> Any:
    """The registered event properties with their docs."""
    specs = insights().registry.specs("property")
    return jsonify([{"name": s.name, "aliases": list(s.names[1:]), "module": s.module, "doc": s.doc} for s in specs])


@api.get("/fs/<module>/<path:filename>")
def module_file(module: str, filename: str) -> Response:
    """A file from a module's file store (what ``fs.get_url`` links to).

    Event senders can make modules write files, so only raster images are served inline;
    anything else (HTML, SVG, scripts) is a download that, with ``nosniff`` and the
    ``sandbox`` policy (web/security.py), can neither render nor run on this origin. Streamed,
    with ETag, conditional GET and single byte ranges (web/files.py)."""
    app = insights()
    if module not in app.registry.modules:
        raise ApiError(404, f"no module {module!r}")
    store = app.services.fs(module)
    try:  # a name the store refuses (outside it, control characters) names no file it serves
        binary, info = store.read(filename)
    except (ArgumentError, OSError):  # missing, expired, a folder, a name too long for a disk
        raise ApiError(404, f"no file {filename!r} in module {module!r} (never written, removed, or expired)") from None
    name = PurePosixPath(filename).name
    image = INLINE_IMAGES.get(PurePosixPath(name).suffix.lower())
    if image is not None:
        return file_response(binary, info, image)
    return file_response(binary, info, "application/octet-stream", download_name=name)


@api.post("/run/<kind>/<name>")
def start_run(kind: str, name: str) -> tuple[Response, int]:
    """Start a view or query without waiting (202 with a task id to poll at ``/result/<task>``).

    A client has at most ``INSIGHTS_MAX_RUNS`` runs outstanding (429 beyond); a run nobody
    polls is forgotten after ``INSIGHTS_RUN_EXPIRES`` seconds.
    """
    if kind not in ("view", "query"):
        raise ApiError(404, f"cannot run a {kind!r}; runs are for views and queries")
    app, spec, arguments = _prepare(kind, name)
    client, limit = client_name(), app.settings.max_runs
    if app.runs.outstanding(client) >= limit:
        raise ApiError(
            429,
            f"this client has {limit} runs outstanding (INSIGHTS_MAX_RUNS); fetch their results at /result first",
            headers={"Retry-After": "1"},
        )
    result = _send(app, spec, arguments)
    token = g.get("insights_token")
    app.runs.record(result.id, kind, spec.name, client, token.name if token is not None else None)
    return jsonify({"task": result.id, "result": f"/result/{result.id}"}), 202


@api.get("/result/<task_id>")
def run_result(task_id: str) -> Response:
    """The state of a started run, and its result once done (delivered once)."""
    app = insights()
    run = app.runs.get(task_id)
    if run is None:
        raise ApiError(404, f"no run {task_id!r} (unknown, already delivered, or expired)")
    public = {"kind": run["kind"], "name": run["name"]}
    result = AsyncResult(task_id, app=app.celery)
    state = result.state
    if state not in READY_STATES:
        return _json({**public, "state": "running" if state == "STARTED" else "pending"})
    app.runs.finish(task_id, run)
    value, traceback = result.result, result.traceback
    result.forget()
    if state != SUCCESS:
        failed = {**public, "state": "failed", "error": f"{run['kind']} {run['name']!r} failed: {_describe(value)}"}
        if traceback and may_see_tracebacks():
            failed["traceback"] = traceback
        return _json(failed)
    return _json({**public, "state": "done", "result": value})


@api.post("/chain")
def run_chain() -> Response:
    """Run queries and views in sequence, each result feeding the next, and answer the last result.

    Body: ``{"steps": [{"query": "get_grades", "args": {"course": "c1"}}, {"view": "plot_grades"}]}``;
    a step ``{"group": [steps]}`` runs its steps in parallel and feeds the list of results on.
    The chain counts against the client's rate as the tasks it starts (one per step and group
    member): the request was charged one on arrival, the rest are charged before it is sent.
    """
    body = request_json()
    if not isinstance(body, dict) or "steps" not in body:
        raise ApiError(400, 'send a JSON object {"steps": [...]} (see /schema for names and parameters)')
    app = insights()
    stages = [_permitted_stage(stage) for stage in parse_steps(body["steps"])]
    canvas = app.compose(stages)
    tasks = sum(len(stage) if isinstance(stage, list) else 1 for stage in stages)
    charge(tasks - 1, already=1)  # limit_rate charged the request itself
    try:
        result = canvas.apply_async()
    except OperationalError as exc:
        raise ApiError(503, f"the broker is unreachable ({exc}); try again shortly") from None
    try:
        value = result.get(timeout=app.settings.result_timeout)
    except ResultTimeout:
        raise ApiError(504, f"the chain did not finish within {app.settings.result_timeout:g} s") from None
    except ArgumentError as exc:
        raise ApiError(400, f"{failed_step(result, stages)}: {exc}") from None
    except Exception as exc:
        raise ApiError(500, f"{failed_step(result, stages)} failed: {_describe(exc)}") from None
    finally:
        result.forget()
    last = stages[-1]
    if isinstance(value, str):
        kind = last.kind if isinstance(last, Step) else "query"
        return Response(value, mimetype="text/html" if kind == "view" else "text/plain")
    return _json(value)


def _permitted_stage(stage: Stage) -> Stage:
    """With auth on, refuse steps the token may not call and apply its locked parameters to each
    (``compose`` then checks every step's arguments, and that no step feeds a parameter it sets).

    A step is checked like a request to ``/query/<name>``: under every name of its function,
    so a denied function is not reachable through an alias, nor a private name (``_…``) at all."""
    from web.auth import current_token, function_resources  # web.auth imports this module

    steps = stage if isinstance(stage, list) else [stage]
    for step in steps:
        refuse_private(step.kind, step.name)
    token = current_token()
    if token is None:
        return stage
    checked = []
    for step in steps:
        resources = function_resources(step.kind, step.name) or [f"{step.kind}:{step.name}"]
        if not token.policy.permits(*resources):
            raise ApiError(403, f"this token may not use {resources[0]}", resource=resources[0])
        spec = insights().registry.get(step.kind, step.name)
        args = token.policy.apply(step.args, takes=accepted_arguments(spec.func))
        checked.append(dataclasses.replace(step, args=args))
    return checked if isinstance(stage, list) else checked[0]


def _run(kind: str, name: str) -> Any:
    app, spec, arguments = _prepare(kind, name)
    hit, value = app.cached_result(spec, arguments)  # memoized and cached: no worker hop
    return value if hit else _await(app, spec, arguments)


def _prepare(kind: str, name: str) -> tuple[Insights, Spec, dict[str, Any]]:
    """The function a request names and the arguments it gives, checked against its parameters.

    An outside ``_memo=refresh`` of a result computed less than ``INSIGHTS_MEMO_MIN_REFRESH``
    seconds ago becomes ``_memo=use`` (a refresh would only add load), for every route that
    runs a function (``/view``, ``/query``, ``/run``)."""
    refuse_private(kind, name)
    app = insights()
    spec = app.registry.get(kind, name)
    arguments = _request_arguments()
    from web.auth import lock_arguments  # auth: drop access_token, apply the token's locked parameters

    arguments = lock_arguments(spec.func, arguments)
    arguments = check_arguments(spec.func, arguments)  # operator keys, bad text, objects, huge names, types: 400
    checked = split_mode(arguments)[1] if memo_policy(spec.func) else arguments
    bind_arguments(spec.label, spec.func, (), checked)
    if arguments.get(MODE_ARGUMENT) == "refresh" and app.fresh_result(spec, arguments):
        arguments = {**arguments, MODE_ARGUMENT: "use"}  # computed moments ago: serve it
    return app, spec, arguments


def refuse_private(kind: str, name: str) -> None:
    """403 for a function name starting with ``_``: private to its module, never served."""
    if name.startswith("_"):
        raise ApiError(403, f"{kind} names starting with '_' are private and not served")


def _send(app: Insights, spec: Spec, arguments: dict[str, Any]) -> AsyncResult:
    try:
        return app.celery.tasks[spec.task_name].apply_async(kwargs=arguments)
    except OperationalError as exc:
        raise ApiError(503, f"the broker is unreachable ({exc}); try again shortly") from None


def _await(app: Insights, spec: Spec, arguments: dict[str, Any]) -> Any:
    timeout = app.settings.result_timeout
    result = _send(app, spec, arguments)
    try:
        return result.get(timeout=timeout)
    except ResultTimeout:
        raise ApiError(
            504, f"{spec.label} did not finish within {timeout:g} s; is a worker consuming its queue?"
        ) from None
    except ArgumentError as exc:  # the framework refused an argument while the function ran (e.g. an fs file name)
        raise ApiError(400, f"{spec.label}: {exc}") from None
    except Exception as exc:
        raise ApiError(500, f"{spec.label} failed: {_describe(exc)}") from None
    finally:
        result.forget()


def may_see_tracebacks() -> bool:
    """Whether this request may see a failed run's traceback: with auth off (an author's own
    deployment), or with a token whose policy allows the ``tracebacks`` resource (web/auth.py).

    A traceback quotes the module's source lines, its file paths and the messages of the
    errors underneath (a database's included), so readers of results do not get it.
    """
    if not insights().settings.auth:
        return True
    token = g.get("insights_token")
    return token is not None and bool(token.policy.permits("tracebacks"))


def _describe(exc: object) -> str:
    """What a client is told of a module's error: its message, but never a database's internals."""
    kind = type(exc)
    if kind.__module__.split(".")[0] in ("pymongo", "bson"):
        return f"a database error ({kind.__name__}); the worker log has the details"
    return f"{kind.__name__}: {exc}"


def _request_arguments() -> dict[str, Any]:
    arguments: dict[str, Any] = request.args.to_dict()
    arguments.update(request.form.to_dict())
    if request.is_json and request.get_data():
        body = request_json()
        if not isinstance(body, dict):
            raise ApiError(400, "a JSON body must be an object mapping argument names to values")
        arguments.update(body)
    return arguments


def request_json() -> Any:
    """The request's JSON body; None if there is none or it is not JSON; 400 if nested too deeply
    (arguments nested that deep could not travel to a worker and back)."""
    too_deep_error = ApiError(400, f"the JSON body is nested more than {MAX_DEPTH} levels deep")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # json raises it, not ValueError, for very deep nesting
        raise too_deep_error from None
    if too_deep(body):
        raise too_deep_error
    return body


def _json(value: Any) -> Response:
    return Response(dumps_plain(value), mimetype="application/json")
