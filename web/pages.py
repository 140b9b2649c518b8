"""HTML pages: the index linking schema, event properties and every view."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

pages = Blueprint("pages", __name__)


@pages.get("/")
def index() -> str:
    """The index page: links to the schema, event properties and each view and query."""
    registry = current_app.extensions["insights"].registry
    return render_template(
        "index.html", views=registry.specs("view"), queries=registry.specs("query"), modules=registry.modules
    )
