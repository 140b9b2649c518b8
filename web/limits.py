"""Limits on what one request and one client may use: the body size whatever the transfer
encoding, and a request rate for the endpoints that run work, shared by every web process.

A client is the token a request authenticated with (auth on) or its remote address (auth
off). Each client has ``INSIGHTS_RATE_LIMIT`` requests per second with bursts of up to
``INSIGHTS_RATE_BURST`` (a GCRA bucket in Redis, one script call per request); beyond it
the answer is 429 with ``Retry-After``. Concurrent runs are capped in ``web/api.py``.
"""

from __future__ import annotations

import math

from flask import Flask, current_app, g, request
from redis.exceptions import RedisError

from web.errors import ApiError

LIMITED_ENDPOINTS = frozenset({"api.run_view", "api.run_query", "api.start_run", "api.run_chain"})

# KEYS[1]: the client's bucket; ARGV[1]: ms per request; ARGV[2]: burst (requests).
# Returns 0 when admitted, else the ms to wait. Redis' clock: every web host agrees.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local after = tat + interval
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
    """429 with ``Retry-After`` when this request's client is beyond its rate (work-running endpoints only)."""
    if request.endpoint not in LIMITED_ENDPOINTS:
        return
    insights = current_app.extensions["insights"]
    limit, burst = insights.settings.rate_limit, insights.settings.rate_burst
    try:
        wait_ms = insights.services.redis.eval(_GCRA, 1, insights.keys.rate(client_name()), 1000.0 / limit, burst)
    except RedisError as exc:
        raise ApiError(503, f"quotas cannot be checked ({type(exc).__name__}); try again shortly") from None
    if wait_ms:
        seconds = max(1, math.ceil(int(wait_ms) / 1000))
        raise ApiError(
            429,
            f"too many requests: at most {limit:g}/s (bursts of {burst}) per client; retry in {seconds} s",
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
