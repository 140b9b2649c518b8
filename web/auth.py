"""Authentication and policy: API tokens, what each may call, and the parameters it locks.

A token is a random secret shown once when an operator creates it (``python -m tasks tokens
create``, tasks/ops/tokens.py); Redis keeps only its SHA-256 digest, with the token's name and
:class:`~tasks.core.policy.Policy` (tasks/core/tokens.py).
A policy names the *resources* a token may use, by ``fnmatch`` patterns:

=================  ==============================================================
``view:<name>``    ``GET|POST /view/<name>`` (any of a view's names)
``query:<name>``   ``GET|POST /query/<name>`` (any of a query's names)
``event``          event intake: ``GET|POST /event``, and ``GET /receipt/…`` of the token's own requests
``batches``        ``GET /batch/…`` (for operators: a batch's errors quote event contents)
``schema``         ``GET /schema``, ``/event_properties``, ``/`` and other dashboard pages
``file:<module>``  ``GET /fs/<module>/…``
``health``         ``GET /health``
``tracebacks``     a failed run's traceback in ``GET /result/…`` (for authors: it quotes code and errors)
=================  ==============================================================

Deny patterns win over allow patterns, and nothing is allowed unless a pattern allows it.
A policy also *locks* parameters to values (a student's token locks ``user``; an
instructor's locks ``course``): a request cannot supply another value through any channel.
A token that locks ``user`` may post only events about that user (see :func:`event_check`).

With ``INSIGHTS_AUTH=on`` every request but ``/static/…``, ``/login`` and ``/logout``
needs a token: ``Authorization: Bearer <token>``, else the ``access_token`` query
parameter (for iframes), else the ``insights_token`` cookie that posting the ``/login``
form sets. With auth off (the embedded default) everything is allowed, and the app says so loudly.

No link sets the cookie (login CSRF: another site could log a victim into its own
account). ``GET /login`` only shows the form; ``POST /login`` refuses cross-site posts.
Logging out is ``POST /logout``, refusing cross-site posts too (``GET`` is 405). An
embedded page (``/embed/…?access_token=T``, in an LMS iframe) sets no cookie either: it
hands ``T`` to its own script in a ``<meta>`` tag, and the script sends it as a Bearer
header (third-party iframes often get no cookies anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, g, jsonify, redirect, render_template, request
from redis.exceptions import RedisError
from werkzeug.wrappers import Response as BaseResponse

from tasks.core.policy import TOKEN_PARAM, accepted_arguments
from tasks.core.tokens import Token
from tasks.errors import UnknownName
from tasks.pipeline.shards import named
from web.api import insights, request_json
from web.errors import ApiError

log = logging.getLogger(__name__)

AUTH_OFF_WARNING = (
    "authentication is OFF: anyone who can reach this port may read every view and query "
    "and post events; set INSIGHTS_AUTH=on"
)
COOKIE = "insights_token"


# Locked parameters --------------------------------------------------------------------
def request_channels() -> list[list[tuple[str, Any]]]:
    """Every (name, value) pair of this request's query string, form, and JSON object body."""
    channels = [list(request.args.items(multi=True)), list(request.form.items(multi=True))]
    if request.is_json and request.get_data():
        body = request_json()
        if isinstance(body, dict):
            channels.append(list(body.items()))
    return channels


def lock_arguments(func: Callable[..., Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of this request to pass to ``func``: without the reserved
    ``access_token``, and with the current token's locked parameters applied."""
    arguments = {k: v for k, v in arguments.items() if k != TOKEN_PARAM}
    token = current_token()
    if token is None or not token.policy.locked:
        return arguments
    return token.policy.apply(arguments, request_channels(), accepted_arguments(func))


def event_check() -> Callable[[Mapping[str, Any]], str | None] | None:
    """For intake with a token that locks ``user``: a check that refuses an event unless it is
    about that user — every user field it has (``tasks.pipeline.shards.named``: ``username``, ``user``,
    ``user_id``, ``context.user_id``, xAPI ``actor``) holds the locked value, and it has one.
    None when there is nothing to check."""
    token = current_token()
    user = token.policy.locked.get("user") if token is not None else None
    if user is None:
        return None
    only = f"this token may only send events about user {user!r}"

    def check(event: Mapping[str, Any]) -> str | None:
        users = named(event, "user")
        if not users:
            return f"names no user; {only}"
        other = next((name for name in users if name != user), None)
        return None if other is None else f"is about user {other!r}; {only}"

    return check


# Flask integration -------------------------------------------------------------------
auth = Blueprint("auth", __name__)
PUBLIC_ENDPOINTS = frozenset({"static", "dashboard.module_static", "auth.login_form", "auth.login", "auth.logout"})


def current_token() -> Token | None:
    """The token this request was authenticated with (None when auth is off)."""
    token: Token | None = g.get("insights_token")
    return token


def may_read_receipt(sender: str | None) -> bool:
    """Whether this request may read a receipt of events ``sender`` sent: always with auth off;
    else only with that very token (receipts are stream ids, timestamps anyone can guess)."""
    token = current_token()
    return token is None or token.name == sender


def init_auth(app: Flask) -> None:
    """Add ``/login`` and ``/logout``; with auth on, require a permitting token on every
    request but static files; with auth off, warn loudly once."""
    app.register_blueprint(auth)
    if not app.extensions["insights"].settings.auth:
        log.warning(AUTH_OFF_WARNING)
        return
    app.before_request(_authenticate)
    app.after_request(_after)


def resources_of(endpoint: str, view_args: Mapping[str, Any]) -> list[str] | None:
    """The resource names a request to ``endpoint`` uses, the name requested first (then a
    function's other names); None when there is nothing to check (the route answers 404).

    Endpoints this module does not know are ``endpoint:<name>`` (denied unless allowed).
    """
    if endpoint in ("api.run_view", "api.run_query"):
        return function_resources("view" if endpoint == "api.run_view" else "query", view_args["name"])
    if endpoint in ("api.start_run", "dashboard.embed"):
        return function_resources(view_args["kind"], view_args["name"])
    if endpoint == "api.run_result":
        run = insights().runs.get(view_args["task_id"])
        return None if run is None else function_resources(str(run["kind"]), str(run["name"]))
    if endpoint == "health.health_report":
        return ["health"]
    if endpoint == "api.run_chain":
        return None  # every step is checked (and its parameters locked) by the endpoint itself
    if endpoint == "api.module_file":
        return [f"file:{view_args['module']}"]
    if endpoint in ("api.schema", "api.event_properties") or endpoint.startswith("dashboard."):
        return ["schema"]
    if endpoint == "intake.batch_record":
        return ["batches"]
    if endpoint.startswith("intake."):
        return ["event"]
    return [f"endpoint:{endpoint}"]


def function_resources(kind: str, name: str) -> list[str] | None:
    """The resources calling the ``kind`` function ``name`` uses: ``kind:name`` first, then
    ``kind:<other name>`` for each of its other names (aliases), as ``Policy.permits`` takes
    them (deny wins over every name); None for a kind that is not a view or a query."""
    if kind not in ("view", "query"):
        return None
    try:
        names: tuple[str, ...] = insights().registry.get(kind, name).names
    except UnknownName:
        names = ()
    return [f"{kind}:{name}", *(f"{kind}:{n}" for n in names if n != name)]


def _presented_token() -> tuple[str, str] | None:
    """The token this request presents and where: Bearer header, else ``access_token``, else cookie."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), "header"
    if request.args.get(TOKEN_PARAM):
        return request.args[TOKEN_PARAM], "query"
    if request.cookies.get(COOKIE):
        return request.cookies[COOKIE], "cookie"
    return None


def _lookup(secret: str) -> Token | None:
    try:
        return insights().tokens.lookup(secret)
    except RedisError as exc:
        raise ApiError(503, f"tokens cannot be checked ({type(exc).__name__}); try again shortly") from None


def _authenticate() -> None:
    """``before_request`` with auth on: 401 without a live token, 403 if its policy denies."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    presented = _presented_token()
    if presented is None:
        raise ApiError(401, "authentication required: send 'Authorization: Bearer <token>'")
    token = _lookup(presented[0])
    if token is None:
        raise ApiError(401, "unknown or revoked token")
    g.insights_token, g.insights_token_source = token, presented[1]
    if request.endpoint is None:
        return  # no such route (404/405): routing answers next
    resources = resources_of(request.endpoint, request.view_args or {})
    if resources is not None and not token.policy.permits(*resources):
        raise ApiError(403, f"this token may not use {resources[0]}", resource=resources[0])
    if request.endpoint == "api.run_result":
        run = insights().runs.get((request.view_args or {})["task_id"])
        if run is not None and run["owner"] != token.name:  # None: started while auth was off
            raise ApiError(403, "this run was started with another token (or while authentication was off)")


def _after(response: Response) -> Response:
    """With auth on: challenge on 401."""
    if response.status_code == 401:
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="insights"')
    return response


def query_token() -> str | None:
    """The token this request was authenticated with if it came as ``?access_token=`` (an
    embedded page hands it to its script: web/dashboard.py), else None."""
    if current_token() is None or g.get("insights_token_source") != "query":
        return None
    return request.args[TOKEN_PARAM]


@auth.get("/login")
def login_form() -> str:
    """The login page: a form that posts a token to ``/login``. A link never logs anyone in
    (an ``access_token`` in it is ignored), so another site cannot log a victim into its account."""
    return render_template("login.html", next=local_path(request.args.get("next", "/")))


@auth.post("/login")
def login() -> BaseResponse:
    """Check the form's ``access_token`` and keep it in an HttpOnly cookie, then redirect to
    ``/`` (or to the form's ``next=/local/path``); 403 for a post from another site's page."""
    _refuse_cross_site("login")
    secret = request.form.get(TOKEN_PARAM, "")
    if not secret or _lookup(secret) is None:
        raise ApiError(401, "unknown or revoked token")
    response = redirect(local_path(request.form.get("next", "/")), 303)
    response.set_cookie(COOKIE, secret, httponly=True, samesite="Lax", secure=request.is_secure)
    return response


def _refuse_cross_site(action: str) -> None:
    """403 unless the request comes from a page of this server: browsers say where a request
    comes from in ``Sec-Fetch-Site`` (older ones only in ``Origin``, checked against this
    server's scheme and ``Host``: ``https://host`` posting to an ``http`` server is another
    origin). A client that sends neither is not a browser, and what it posts forges nothing."""
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if site is not None:
        cross = site not in ("same-origin", "none")  # none: the user's own navigation
    else:
        ours = _origin_of(f"{request.scheme}://{request.host}")
        cross = origin is not None and (ours is None or _origin_of(origin) != ours)
    if cross:
        raise ApiError(403, f"cross-site {action} refused: {action} from this server's own pages")


def _origin_of(url: str) -> tuple[str, str] | None:
    """The origin of ``url`` (an ``Origin`` header, or this server's scheme and ``Host``): its
    scheme and host, lower case, with a port only when not the scheme's default; None for
    ``null`` or anything unreadable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), host if port is None or port == default else f"{host}:{port}"


def local_path(target: str) -> str:
    """``target`` if it is a path on this server (``/view/name``); else 400. Control characters
    (CR/LF would split the ``Location`` header) and anything a browser reads as another host are refused."""
    parts = urlsplit(target)
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 or ord(c) == 127 for c in target)
        or parts.scheme
        or parts.netloc
    ):
        raise ApiError(400, "next must be a path on this server, such as /view/name")
    return target


@auth.route("/logout", methods=["GET", "POST"])
def logout() -> BaseResponse:
    """Forget the token cookie (``POST`` only, from this server's pages: a link or another
    site cannot log anyone out); then redirect (303) to the form's ``next=/local/path``, or
    answer ``{"logged_out": true}``. ``GET`` is 405 (it is routed here so that it is 405
    with auth on too, not 401)."""
    if request.method != "POST":
        raise ApiError(405, "log out with POST /logout (the dashboard's 'log out' button)", headers={"Allow": "POST"})
    _refuse_cross_site("logout")
    target = request.form.get("next")
    response: BaseResponse = jsonify({"logged_out": True}) if target is None else redirect(local_path(target), 303)
    response.delete_cookie(COOKIE, httponly=True, samesite="Lax")
    return response
