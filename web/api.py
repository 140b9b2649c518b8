"""HTTP API: views, queries, schema, event properties, module files."""

from __future__ import annotations

import mimetypes
from typing import Any

from celery.exceptions import TimeoutError as ResultTimeout
from flask import Blueprint, Response, current_app, jsonify, render_template, request, send_file
from kombu.exceptions import OperationalError

from tasks.app import Insights
from tasks.inject import bind_arguments
from tasks.registry import Spec
from tasks.serialization import dumps_plain
from web.errors import ApiError

api = Blueprint("api", __name__)


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
    """Every view, query and event handler with its category and doc (``?f=html`` for a page)."""
    app = insights()
    specs = [spec for kind in ("view", "query", "handler") for spec in app.registry.specs(kind)]
    entries = [{**spec.describe(), "queue": app.queue_of(spec)} for spec in specs]
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
    """A file from a module's file store (what ``fs.get_url`` links to)."""
    app = insights()
    if module not in app.registry.modules:
        raise ApiError(404, f"no module {module!r}")
    store = app.services.fs(module)
    if not store.exists(filename):
        raise ApiError(404, f"no file {filename!r} in module {module!r} (never written, removed, or expired)")
    mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return send_file(store.path(filename), mimetype=mimetype, max_age=0)


def _run(kind: str, name: str) -> Any:
    if name.startswith("_"):
        raise ApiError(403, f"{kind} names starting with '_' are private and not served")
    app = insights()
    spec = app.registry.get(kind, name)
    arguments = _request_arguments()
    bind_arguments(spec.label, spec.func, (), arguments)
    return _await(app, spec, arguments)


def _await(app: Insights, spec: Spec, arguments: dict[str, Any]) -> Any:
    timeout = app.settings.result_timeout
    try:
        result = app.celery.tasks[spec.task_name].apply_async(kwargs=arguments)
    except OperationalError as exc:
        raise ApiError(503, f"the broker is unreachable ({exc}); try again shortly") from None
    try:
        return result.get(timeout=timeout)
    except ResultTimeout:
        raise ApiError(
            504, f"{spec.label} did not finish within {timeout:g} s; is a worker consuming its queue?"
        ) from None
    except Exception as exc:
        raise ApiError(500, f"{spec.label} failed: {type(exc).__name__}: {exc}") from None
    finally:
        result.forget()


def _request_arguments() -> dict[str, Any]:
    arguments: dict[str, Any] = request.args.to_dict()
    arguments.update(request.form.to_dict())
    if request.is_json and request.get_data():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "a JSON body must be an object mapping argument names to values")
        arguments.update(body)
    return arguments


def _json(value: Any) -> Response:
    return Response(dumps_plain(value), mimetype="application/json")
