"""Flask application factory."""

from __future__ import annotations

from flask import Flask

from tasks.app import Insights, create_insights
from web.api import api
from web.auth import init_auth
from web.dashboard import dashboard
from web.errors import register_error_handlers
from web.health import health
from web.intake import intake
from web.limits import init_limits
from web.security import init_security


def create_app(insights: Insights | None = None) -> Flask:
    """The web app serving views, queries, schema and event intake for ``insights``."""
    insights = insights if insights is not None else create_insights()
    app = Flask(__name__)
    # No routing redirects ('/a//b' -> '/a/b', '/x' -> '/x/'): werkzeug makes their Location
    # absolute from the request's Host header. Such paths are 404 instead.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
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
    init_limits(app)  # after auth: a request counts against its token; no body is read for a refused one
    return app
