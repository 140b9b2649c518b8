"""Authentication and policy: API tokens, what each may call, and the parameters it locks.

A token is a random secret shown once when an operator creates it (``insights tokens
create``); Redis keeps only its SHA-256 digest, with the token's name and :class:`Policy`.
A policy names the *resources* a token may use, by ``fnmatch`` patterns:

=================  ==============================================================
``view:<name>``    ``GET|POST /view/<name>`` (any of a view's names)
``query:<name>``   ``GET|POST /query/<name>`` (any of a query's names)
``event``          event intake: ``GET|POST /event``, and ``GET /receipt/…`` of the token's own requests
``batches``        ``GET /batch/…`` (for operators: a batch's errors quote event contents)
``schema``         ``GET /schema``, ``/event_properties``, ``/`` and other dashboard pages
``file:<module>``  ``GET /fs/<module>/…``
``health``         ``GET /health``
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

import argparse
import builtins
import hashlib
import json
import logging
import secrets
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Blueprint, Flask, Response, g, jsonify, redirect, render_template, request
from redis.exceptions import RedisError, WatchError
from werkzeug.wrappers import Response as BaseResponse

from config.settings import Settings
from tasks.errors import InsightsError, UnknownName
from tasks.inject import INJECTED, caller_arguments, injected_names, signature
from tasks.shards import named
from web.api import insights, request_json
from web.errors import ApiError

log = logging.getLogger(__name__)

AUTH_OFF_WARNING = (
    "authentication is OFF: anyone who can reach this port may read every view and query "
    "and post events; set INSIGHTS_AUTH=on"
)
TOKEN_PARAM = "access_token"  # query parameter carrying a token; reserved: never reaches a function
COOKIE = "insights_token"
TOKENS_KEY = "insights:auth:tokens"  # Redis hash: sha256 hex digest of a token -> JSON record
NAMES_KEY = "insights:auth:names"  # Redis hash: token name -> digest
LOCKED_MESSAGE = "parameter {name!r} is locked to this token's value"
RESOURCES = ("event", "schema", "health", "batches")  # resources without a name part (see the table above)
RESOURCE_HELP = "view:NAME, query:NAME, file:MODULE, " + ", ".join(RESOURCES)


# Policy and tokens ------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    """What a token may call (``allow``/``deny`` patterns over resource names; deny wins,
    default deny) and which parameters it locks to which values (``locked``)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    locked: dict[str, str] = field(default_factory=dict)

    def permits(self, resource: str, *aliases: str) -> bool:
        """Whether the token may use ``resource``. Aliases name the same resource (a view or
        query registered under several names): some name must be allowed and none denied."""
        names = (resource, *aliases)
        if any(fnmatchcase(name, pattern) for name in names for pattern in self.deny):
            return False
        return any(fnmatchcase(name, pattern) for name in names for pattern in self.allow)

    def to_json(self) -> dict[str, Any]:
        """The policy as a JSON-ready object (``from_json`` reads it back)."""
        return {"allow": list(self.allow), "deny": list(self.deny), "locked": dict(self.locked)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        """A policy from what ``to_json`` wrote."""
        return cls(
            allow=tuple(str(p) for p in data.get("allow", ())),
            deny=tuple(str(p) for p in data.get("deny", ())),
            locked={str(k): str(v) for k, v in dict(data.get("locked", {})).items()},
        )


@dataclass(frozen=True)
class Token:
    """A stored token's name, policy and creation time (epoch seconds); never its secret."""

    name: str
    policy: Policy
    created: float

    def to_json(self) -> dict[str, Any]:
        """The record stored under the token's digest."""
        return {"name": self.name, "policy": self.policy.to_json(), "created": self.created}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Token:
        """A token from its stored record."""
        return cls(str(data["name"]), Policy.from_json(data["policy"]), float(data["created"]))


class TokenError(InsightsError):
    """A token cannot be created (its name is taken or invalid)."""


def digest(token: str) -> str:
    """The SHA-256 hex digest a token is stored under."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Tokens in Redis, stored only as digests. Looking a token up hashes it first, so the
    lookup's timing depends on the digest, never on how much of a secret was guessed right."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def create(self, name: str, policy: Policy) -> str:
        """Store a new token named ``name`` (unique) with ``policy``; returns its secret, which
        is not stored and cannot be shown again."""
        if not name or name != name.strip():
            raise TokenError(f"a token name must be non-empty without surrounding spaces, got {name!r}")
        secret = secrets.token_urlsafe(32)
        key = digest(secret)
        record = json.dumps(Token(name, policy, time.time()).to_json())
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(NAMES_KEY)
                if pipe.hexists(NAMES_KEY, name):
                    raise TokenError(f"a token named {name!r} exists; revoke it first or choose another name")
                pipe.multi()
                pipe.hset(NAMES_KEY, name, key)
                pipe.hset(TOKENS_KEY, key, record)
                pipe.execute()
            except WatchError:
                raise TokenError(f"tokens changed while creating {name!r}; try again") from None
        return secret

    def revoke(self, name: str) -> bool:
        """Revoke the token named ``name`` at once; False if there is none."""
        key = self.redis.hget(NAMES_KEY, name)
        if key is None:
            return False
        with self.redis.pipeline() as pipe:
            pipe.hdel(TOKENS_KEY, key)
            pipe.hdel(NAMES_KEY, name)
            pipe.execute()
        return True

    def lookup(self, token: str) -> Token | None:
        """The live token whose secret is ``token``, or None (unknown or revoked)."""
        record = self.redis.hget(TOKENS_KEY, digest(token))
        return Token.from_json(json.loads(record)) if record is not None else None

    def list(self) -> builtins.list[Token]:
        """Every live token, by name (no secrets: they are not stored)."""
        records = self.redis.hgetall(TOKENS_KEY).values()
        return sorted((Token.from_json(json.loads(r)) for r in records), key=lambda t: t.name)


# Locked parameters --------------------------------------------------------------------
def apply_locks(
    arguments: Mapping[str, Any],
    locked: Mapping[str, str],
    channels: Iterable[Iterable[tuple[str, Any]]] = (),
    takes: Collection[str] | None = None,
) -> dict[str, Any]:
    """``arguments`` with every locked parameter set to its locked value.

    ``channels`` are the (name, value) pairs of each input channel the arguments were
    merged from (query string, form, JSON body; repeated names too): if the merged
    arguments or any channel hold a locked parameter with another value, the request is
    refused (403) — one matching channel does not excuse another. ``takes`` are the
    argument names the function accepts (None: any, as it takes ``params``); locked
    parameters it does not accept are dropped, so a token locking ``course`` can still call
    a global query.
    """
    for name, value in (pair for pairs in [arguments.items(), *channels] for pair in pairs):
        if name in locked and value != locked[name]:
            raise ApiError(403, LOCKED_MESSAGE.format(name=name), parameter=name)
    result = {**arguments, **locked}
    return {k: v for k, v in result.items() if k not in locked or takes is None or k in takes}


def accepted_arguments(func: Callable[..., Any]) -> frozenset[str] | None:
    """The argument names a caller may pass to ``func``; None if it takes any (``params``, ``**kwargs``)."""
    takes_any = any(p.kind == p.VAR_KEYWORD for p in signature(func).parameters.values())
    if takes_any or "params" in injected_names(func):
        return None
    return frozenset(caller_arguments(func))


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
    return apply_locks(arguments, token.policy.locked, request_channels(), accepted_arguments(func))


def event_check() -> Callable[[Mapping[str, Any]], str | None] | None:
    """For intake with a token that locks ``user``: a check that refuses an event unless it is
    about that user — every user field it has (``tasks.shards.named``: ``username``, ``user``,
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


def token_store() -> TokenStore:
    """The token store on the app's Redis."""
    return TokenStore(insights().services.redis)


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
        return token_store().lookup(secret)
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


# Command line -------------------------------------------------------------------------
def tokens_main(argv: list[str], settings: Settings) -> int:
    """``insights tokens create|revoke|list``; ``argv`` are the arguments after ``tokens``.

    Returns 0 on success, 1 when revoking a token that does not exist, 2 for bad arguments
    or a name that is taken.
    """
    parser = argparse.ArgumentParser(prog="insights tokens", description="Create, revoke or list API tokens.")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token and print its secret (shown only this once)")
    create.add_argument("name", help="unique name of the token, e.g. who or what it is for")
    for option, what in (("allow", "may use"), ("deny", "may never use")):
        create.add_argument(
            f"--{option}", action="extend", nargs="+", default=[], metavar="PATTERN",
            help=f"resources the token {what}: {RESOURCE_HELP} (fnmatch patterns)",
        )  # fmt: skip
    create.add_argument(
        "--lock", action="extend", nargs="+", default=[], metavar="PARAM=VALUE",
        help="lock an argument to a value, e.g. user=alice",
    )  # fmt: skip
    actions.add_parser("revoke", help="revoke a token by name").add_argument("name")
    actions.add_parser("list", help="list tokens: name, created, allow, deny, locked (never secrets)")
    args = parser.parse_args(argv)
    try:
        store = TokenStore(redis.Redis.from_url(settings.redis))
        if args.action == "create":
            policy = Policy(tuple(args.allow), tuple(args.deny), _locks(args.lock))
            for pattern in (*policy.allow, *policy.deny):
                _check_pattern(pattern)
            print(store.create(args.name, policy))
            print(f"token {args.name!r} created; its secret above is shown only this once", file=sys.stderr)
            if not policy.allow:
                print("warning: the token allows nothing (no --allow)", file=sys.stderr)
            return 0
        if args.action == "revoke":
            if store.revoke(args.name):
                print(f"token {args.name!r} revoked")
                return 0
            print(f"error: no token named {args.name!r}", file=sys.stderr)
            return 1
        for token in store.list():
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(token.created))
            p = token.policy
            locked = ",".join(f"{k}={v}" for k, v in p.locked.items()) or "-"
            print(f"{token.name}\t{created}\tallow={','.join(p.allow) or '-'}\tdeny={','.join(p.deny) or '-'}"
                  f"\tlocked={locked}")  # fmt: skip
        return 0
    except (InsightsError, RedisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _locks(items: Iterable[str]) -> dict[str, str]:
    locked = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise TokenError(f"--lock takes PARAM=VALUE, got {item!r}")
        if name in INJECTED or name == TOKEN_PARAM:
            raise TokenError(f"{name!r} is filled in by the framework and cannot be locked")
        locked[name] = value
    return locked


def _check_pattern(pattern: str) -> None:
    """Refuse a pattern that can match no resource (e.g. a bare query name without ``query:``)."""
    if ":" not in pattern and not any(fnmatchcase(r, pattern) for r in RESOURCES):
        raise TokenError(f"pattern {pattern!r} matches no resource; resources are {RESOURCE_HELP}")
