"""Flask application factory."""

from __future__ import annotations

from flask import Flask, current_app, request

from tasks.app import Insights, create_insights
from web.api import api
from web.auth import init_auth
from web.dashboard import dashboard
from web.errors import ApiError, register_error_handlers
from web.health import health
from web.intake import intake
from web.security import init_security


def create_app(insights: Insights | None = None) -> Flask:
    """The web app serving views, queries, schema and event intake for ``insights``."""
    insights = insights if insights is not None else create_insights()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = insights.settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["insights"] = insights
    app.register_blueprint(api)
    app.register_blueprint(intake)
    app.register_blueprint(dashboard)
    app.register_blueprint(health)
    register_error_handlers(app)
    init_security(app)
    init_auth(app)  # auth: tokens and policies (web/auth.py); warns loudly when off
    app.before_request(limit_streamed_body)  # after authentication: no body is read for a refused request
    return app


def limit_streamed_body() -> None:
    """Hold a body sent without ``Content-Length`` (``Transfer-Encoding: chunked``) to the
    request-size limit: 413 when it is larger.

    Werkzeug refuses a declared ``Content-Length`` over the limit, but cuts a streamed body
    at the limit without a word; so such a body is read here, one byte past the limit at
    most, and refused whole when that byte exists.
    """
    if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return  # a declared length is checked by werkzeug; an unterminated stream is not read at all
    limit: int = current_app.config["MAX_CONTENT_LENGTH"]
    request.max_content_length = limit + 1
    if len(request.get_data(cache=True)) > limit:
        raise ApiError(413, f"the request body is larger than {limit} bytes; send smaller batches")
