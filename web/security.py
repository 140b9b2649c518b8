"""Response headers that keep view output and the dashboard apart, and pages framable where meant."""

from __future__ import annotations

from flask import Flask, Response, request

# Dashboard pages: our own scripts only. View output shown in them sits in sandboxed frames.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; object-src 'none'; frame-ancestors {ancestors}"
)
# Raw view HTML from /view/<name>: rendered as an inert document (no scripts, no forms).
VIEW_POLICY = "sandbox; default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
# Files modules wrote (/fs/...): never a document with scripts of this origin, whatever their type.
FILE_POLICY = "sandbox"


def init_security(app: Flask) -> None:
    """Add the security headers to every response."""

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.endpoint == "api.module_file":
            response.headers["Content-Security-Policy"] = FILE_POLICY
        elif response.mimetype == "text/html":
            if request.endpoint == "api.run_view":
                response.headers["Content-Security-Policy"] = VIEW_POLICY
            else:
                embeddable = request.endpoint == "dashboard.embed"
                ancestors = "*" if embeddable else "'self'"
                response.headers["Content-Security-Policy"] = PAGE_POLICY.format(ancestors=ancestors)
                if not embeddable:
                    response.headers["X-Frame-Options"] = "SAMEORIGIN"
        return response
