"""Limits on what one request and one client may use: the body size whatever the transfer
encoding, and a request rate for the endpoints that run work, shared by every web process.

A client is the token a request authenticated with (auth on) or its remote address (auth
off). Each client may start ``INSIGHTS_RATE_LIMIT`` tasks per second with bursts of up to
``INSIGHTS_RATE_BURST`` (a GCRA bucket in Redis, one script call per charge); beyond it
the answer is 429 with ``Retry-After``. A request to a work-running endpoint is charged
one task on arrival; a chain is charged the rest of the tasks it starts (one per step and
group member) once it is parsed, before anything is sent (``charge``), and one that starts
more tasks than a burst holds is refused outright. Concurrent runs are capped in
``web/api.py``.
"""

from __future__ import annotations

import math

from flask import Flask, current_app, g, request
from redis.exceptions import RedisError

from web.errors import ApiError

LIMITED_ENDPOINTS = frozenset({"api.run_view", "api.run_query", "api.start_run", "api.run_chain"})

# KEYS[1]: the client's bucket; ARGV[1]: ms per task; ARGV[2]: burst (tasks); ARGV[3]: cost
# (tasks this charge starts). Returns 0 when admitted (and charged), else the ms to wait
# (nothing charged). Redis' clock: every web host agrees.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local after = tat + tonumber(ARGV[3]) * interval
local excess = after - now - tonumber(ARGV[2]) * interval
if excess > 0 then return math.ceil(excess) end
redis.call('SET', KEYS[1], tostring(after), 'PX', math.ceil(after - now) + 1)
return 0
"""


def client_name() -> str:
    """Who a request counts against: its token's name, else its remote address."""
    token = g.get("insights_token")
    return f"token:{token.name}" if token is not None else f"addr:{request.remote_addr}"


def init_limits(app: Flask) -> None:
    """Refuse requests to work-running endpoints beyond the client's rate (429 with Retry-After),
    then streamed bodies over the size limit (413): a refused request's body is never read."""
    app.before_request(limit_rate)
    app.before_request(limit_streamed_body)


def limit_rate() -> None:
    """429 with ``Retry-After`` when this request's client is beyond its rate (work-running
    endpoints only): the request is charged one task."""
    if request.endpoint in LIMITED_ENDPOINTS:
        charge(1)


def charge(tasks: int, already: int = 0) -> None:
    """Charge this request's client ``tasks`` more tasks against its rate; 429 beyond it
    (with ``Retry-After``), and 429 without it when ``already`` + ``tasks`` (what the whole
    request starts) is more than a burst holds: such a request can never be admitted."""
    insights = current_app.extensions["insights"]
    limit, burst = insights.settings.rate_limit, insights.settings.rate_burst
    if already + tasks > burst:
        raise ApiError(
            429,
            f"this request starts {already + tasks} tasks, more than a client may start at once "
            f"(bursts of {burst}, INSIGHTS_RATE_BURST); split it into smaller requests",
        )
    if tasks <= 0:
        return
    try:
        wait_ms = insights.services.redis.eval(
            _GCRA, 1, insights.keys.rate(client_name()), 1000.0 / limit, burst, tasks
        )
    except RedisError as exc:
        raise ApiError(503, f"quotas cannot be checked ({type(exc).__name__}); try again shortly") from None
    if wait_ms:
        seconds = max(1, math.ceil(int(wait_ms) / 1000))
        raise ApiError(
            429,
            f"too many requests: at most {limit:g}/s (tasks started, bursts of {burst}) per client; "
            f"retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )


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
