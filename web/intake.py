"""Event intake over HTTP: accept events durably (202), then report where they are."""

from __future__ import annotations

import zlib

from flask import Blueprint, Response, current_app, jsonify, request
from redis.exceptions import RedisError

from tasks.codec.serialization import dumps_plain
from tasks.pipeline.parsing import parse_events
from web.api import insights
from web.auth import current_token, event_check, may_read_receipt
from web.errors import ApiError

intake = Blueprint("intake", __name__)


@intake.route("/event", methods=["GET", "POST"])
@intake.route("/httpevent", methods=["GET", "POST"])  # the original's URL (djeventstream's HTTP handler)
def post_events() -> tuple[Response, int]:
    """Hold the events durably for the batcher and answer 202 with a receipt (``/event``, or
    ``/httpevent`` as the original named it: the same endpoint, auth resource ``event``).

    The body is JSON: one event, a list, a JSON string, a list of JSON strings, or JSON
    lines, optionally gzip-compressed (``Content-Encoding: gzip``). A form or query string
    with a ``msg`` field (what ``logging.handlers.HTTPHandler`` sends) carries them in
    ``msg``. Items that are not events are refused by index, and so are events about another
    user than the one the token locks (``user``); the rest are accepted. The answer lists
    the first 100 refusals (``rejected``; ``tasks.pipeline.parsing.MAX_LISTED_REJECTIONS``)
    and counts them all (``rejected_count``), so it stays small whatever was sent. With auth
    on, the events belong to the token's name: their ids are scoped by it.
    """
    payload = _payload()
    parsed = parse_events(payload, event_check())
    app = insights()
    token = current_token()
    sender = token.name if token is not None else None  # events are deduplicated per sender
    try:
        # Not the body as sent: submit stores what the batcher would derive per event (tasks/pipeline/stream.py).
        receipt = app.intake.submit(parsed.events, sender=sender)
    except RedisError as exc:
        reason = f"the events could not be stored ({type(exc).__name__}); nothing was kept, send again"
        raise ApiError(503, reason) from None
    body = {
        "receipt": receipt,
        "accepted": len(parsed.events),
        "rejected": parsed.rejected,
        "rejected_count": parsed.rejected_count,
    }
    return Response(dumps_plain(body), status=202, mimetype="application/json"), 202


@intake.get("/receipt/<receipt>")
def receipt_state(receipt: str) -> Response:
    """Where a request's events are: queued, pending in batches, or done (with failed handlers).

    With auth on, only the token that sent the events may ask; to any other the receipt is unknown.
    """
    unknown = ApiError(404, f"no receipt {receipt!r} (unknown, or its record expired)")
    app = insights()
    state = app.store.receipt(receipt)
    sender = state.get("sender")
    if state["state"] == "queued":
        held, sender = app.intake.queued(receipt)
        if not held:  # the batcher links a receipt before deleting its entry: read the link again
            state = app.store.receipt(receipt)
            if state["state"] == "queued":
                raise unknown
            sender = state.get("sender")
    if not may_read_receipt(sender):
        raise unknown
    return jsonify(state)


@intake.get("/batch/<batch_id>")
def batch_record(batch_id: str) -> Response:
    """Which handler tasks of a batch have succeeded or failed (with auth on: for ``batches`` tokens)."""
    record = insights().store.get(batch_id)
    if record is None:
        raise ApiError(404, f"no batch {batch_id!r} (unknown, or its record expired)")
    return jsonify(record)


def _payload() -> str | bytes:
    if request.method == "GET":
        if "msg" not in request.args:
            needs = "needs a 'msg' argument holding the event JSON (as HTTPHandler sends)"
            raise ApiError(400, f"GET {request.path} {needs}")
        return request.args["msg"]
    body = _body()
    if request.mimetype == "application/x-www-form-urlencoded" and "msg" in request.form:
        return request.form["msg"]
    return body


def _body() -> bytes:
    raw = request.get_data(cache=True)
    encoding = request.headers.get("Content-Encoding", "identity").lower()
    if encoding in ("identity", ""):
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise ApiError(415, f"Content-Encoding {encoding!r} is not supported; send gzip or plain JSON")
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise ApiError(400, f"the gzip body is corrupt ({exc})") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise ApiError(413, f"the decompressed body is larger than {limit} bytes; send smaller batches")
    if not inflater.eof or inflater.unused_data:
        raise ApiError(400, "the gzip body is truncated or has trailing garbage")
    return body
