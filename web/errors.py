"""Every error the web layer answers with: JSON bodies an API user can act on."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from tasks.core.policy import LockedParameter
from tasks.errors import ArgumentError, CacheMiss, InvalidEvent, UnknownName

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error with a status and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **details: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.details = details


def error_response(status: int, message: str, **details: object) -> tuple[Response, int]:
    """A JSON error body ``{"error": message, "status": status, ...}``; an HTML page on dashboard pages."""
    if _is_page():
        return Response(render_template("error.html", status=status, message=message), mimetype="text/html"), status
    return jsonify({"error": message, "status": status, **details}), status


def _is_page() -> bool:
    """Whether the request is for a dashboard page (errors then read as a page, not JSON)."""
    return (
        (request.blueprint == "dashboard" and request.endpoint != "dashboard.module_static")
        or (request.endpoint == "api.schema" and request.args.get("f") == "html")
        or request.endpoint in ("auth.login_form", "auth.login")
    )


def register_error_handlers(app: Flask) -> None:
    """Answer every error as JSON with the right 4xx/5xx status; never leak a traceback."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> tuple[Response, int]:
        response, status = error_response(exc.status, exc.message, **exc.details)
        response.headers.update(exc.headers)
        return response, status

    @app.errorhandler(UnknownName)
    def unknown_name(exc: UnknownName) -> tuple[Response, int]:
        return error_response(404, str(exc))

    @app.errorhandler(LockedParameter)
    def locked_parameter(exc: LockedParameter) -> tuple[Response, int]:
        return error_response(403, str(exc), parameter=exc.parameter)

    @app.errorhandler(ArgumentError)
    def bad_argument(exc: ArgumentError) -> tuple[Response, int]:
        return error_response(400, str(exc))

    @app.errorhandler(CacheMiss)
    def cache_miss(exc: CacheMiss) -> tuple[Response, int]:
        return error_response(404, str(exc))

    @app.errorhandler(InvalidEvent)
    def bad_event(exc: InvalidEvent) -> tuple[Response, int]:
        return error_response(400, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "internal error; the server log has the details")
