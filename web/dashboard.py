"""Dashboard pages: every view and query with a form, an embeddable page per function, module static files,
the reports scheduled jobs wrote."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request, send_from_directory

from tasks.authoring.injection import required_arguments
from tasks.core.registry import Spec
from web.api import insights
from web.auth import query_token
from web.errors import ApiError

dashboard = Blueprint("dashboard", __name__)


@dashboard.get("/")
def index() -> str:
    """Every view and query, grouped by module, each with a form that runs it in place."""
    registry = insights().registry
    modules: dict[str, list[Spec]] = {}
    for spec in registry.specs("view") + registry.specs("query"):
        if not spec.name.startswith("_"):
            modules.setdefault(spec.module, []).append(spec)
    args, autorun = _page_arguments()
    return render_template(
        "index.html",
        modules=dict(sorted(modules.items())),
        required=_required,
        args=args,
        autorun=autorun,
        args_for=lambda spec: _args_for(spec, args),
    )


@dashboard.get("/embed/<kind>/<name>")
def embed(kind: str, name: str) -> str:
    """A page showing one view or query run with the query string's arguments (for an LMS iframe)."""
    if kind not in ("view", "query") or name.startswith("_"):
        raise ApiError(404, f"nothing to embed at {kind}/{name}")
    spec = insights().registry.get(kind, name)
    args = {k: v for k, v in request.args.items() if k != "access_token"}
    # With ?access_token=, the page's script sends the token as a Bearer header (no cookie: web/auth.py).
    return render_template(
        "embed.html",
        spec=spec,
        args=args,
        autorun=True,
        required=_required,
        args_for=lambda s: _args_for(s, args),
        token=query_token(),
    )


@dashboard.get("/modules/<module>/static/<path:filename>")
def module_static(module: str, filename: str) -> Response:
    """A file from a module's ``static/`` folder."""
    registry = insights().registry
    if module not in registry.modules:
        raise ApiError(404, f"no module {module!r}")
    return send_from_directory(registry.module_folder(module) / "static", filename, max_age=300)


# Reports (tasks/schedule.py) ---------------------------------------------------------------
@dashboard.get("/reports")
def reports() -> Any:
    """The reports ``@cron`` jobs wrote, newest first (``?module=`` one module, ``?f=json`` as data)."""
    module = request.args.get("module") or None
    entries = insights().reports(module)
    if request.args.get("f") == "json":
        return jsonify(entries)
    return render_template("reports.html", reports=entries, module=module)


# end reports


def _required(spec: Spec) -> list[str]:
    return required_arguments(spec.func)


def _page_arguments() -> tuple[dict[str, str], bool]:
    """Values to prefill every form with (``?course=…``), and whether to run the views at once."""
    args = {k: v for k, v in request.args.items() if k not in ("autorun", "access_token")}
    return args, request.args.get("autorun") in ("1", "true")


def _args_for(spec: Spec, args: dict[str, str]) -> dict[str, str]:
    """The page's values for the parameters this function takes."""
    return {name: args[name] for name in spec.category if name in args}
