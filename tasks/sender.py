"""Send tracking events to an Insights server's ``POST /event`` endpoint.

This module uses the Python standard library only, so an LMS can copy this single file
into its own tree without installing anything.

Three ways to send, from the most to the least explicit::

    # one request, in the caller's thread; raises SendError when the events cannot be delivered
    answer = send_events("https://insights.example/event", [event1, event2], token="...")

    # a background thread that batches; send() never waits for the network
    sender = EventSender("https://insights.example/event", token="...")
    sender.send(event)
    sender.close()                      # or let the interpreter's exit flush it

    # a logging handler: every record logged to the tracking logger becomes an event
    logging.getLogger("tracking").addHandler(InsightsHandler("https://insights.example/event"))

Delivery is at least once: a request whose answer is lost (a timeout) is sent again, and
the server recognises the events it already holds (the ``duplicates`` count of its answer).
This module logs to the ``insights.sender`` logger; an ``InsightsHandler`` never sends
that logger's records, so attaching the handler to the root logger cannot loop.
"""

from __future__ import annotations

import atexit
import gzip
import http.client
import json
import logging
import math
import os
import random
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

__all__ = ["EventSender", "InsightsHandler", "SendError", "send_events"]

log = logging.getLogger("insights.sender")

USER_AGENT = "insights-sender/1"
EXIT_FLUSH_TIMEOUT = 5.0  # seconds each EventSender may spend delivering its buffer at interpreter exit
OUTAGE_WARNING_INTERVAL = 60.0  # undeliverable batches: one warning per this many seconds, the rest at INFO
CLOSE_GRACE = 0.5  # seconds close() waits for the thread to stop once the time to deliver is over
DROP_WARNING_INTERVAL = 10.0  # at most one warning about dropped events per this many seconds (per sender)


class SendError(Exception):
    """Events were not delivered: the server refused them, or a transient failure outlasted every retry.

    ``status`` is the HTTP status of the last answer (None when no answer came: the
    connection failed or timed out); ``body`` is that answer, decoded from JSON when it is
    JSON (``{"error": ..., "status": ...}`` from Insights), else text (None without an
    answer); ``retryable`` is True when the failure was transient, so sending the same
    events later may succeed.
    """

    def __init__(self, message: str, *, status: int | None = None, body: Any = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.retryable = retryable


def send_events(
    url: str,
    events: Sequence[Mapping[str, Any]],
    *,
    token: str | None = None,
    timeout: float = 10.0,
    retries: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    gzip_min_bytes: int = 16_384,
) -> dict[str, Any]:
    """POST events (one request) and return the server's JSON answer; retries transient failures.

    ``url`` is the event endpoint (``https://insights.example/event``); ``token``, when
    given, is sent as ``Authorization: Bearer <token>``; ``timeout`` bounds each network
    operation of an attempt. Connection errors, timeouts, HTTP 5xx and 429 are retried up
    to ``retries`` times after exponentially growing, randomized delays starting at
    ``backoff`` seconds; a numeric ``Retry-After`` from the server replaces the computed
    delay. No single delay exceeds ``max_backoff`` seconds. Bodies of ``gzip_min_bytes``
    bytes or more are sent gzip-compressed.

    The answer is the server's JSON object, e.g. ``{"receipt": ..., "accepted": 2,
    "duplicates": 0, "rejected": [], "rejected_count": 0}``. Events the server rejected
    individually (counted in ``rejected_count``, the first ones listed in ``rejected``) do
    not make the call fail; a warning names how many there were.

    Raises ``SendError`` when the server refuses the request (any other 4xx: its body says
    why, and sending it again cannot help) or when every attempt failed; ``ValueError`` for
    an empty ``events``, a URL that is not http(s) or invalid options; ``TypeError`` or
    ``ValueError`` for an event that cannot be encoded as JSON.
    """
    _check_url(url)
    _check_retry_options(timeout, retries, backoff, max_backoff)
    if not events:
        raise ValueError("no events to send")
    body = _join([_encode_event(event) for event in events])
    return _post(
        url,
        body,
        len(events),
        token=token,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        max_backoff=max_backoff,
        gzip_min_bytes=gzip_min_bytes,
    )


class EventSender:
    """Sends events in batches from a background thread.

    A batch leaves when ``batch_size`` events are waiting or ``interval`` seconds after the
    first of them arrived, whichever comes first. A batch that cannot be delivered (server
    down, 5xx, 429, ... after ``retries`` retries) stays buffered and is sent again later,
    in order. Up to ``max_buffer`` events are held; beyond that the oldest are dropped,
    counted in ``stats["dropped"]`` and reported in a warning. A batch the server refuses
    (a 4xx other than 429) is logged with the server's error and counted in
    ``stats["failed"]``; a batch refused as too large (413) is first split in halves.

    ``token``, ``timeout``, ``retries``, ``backoff``, ``max_backoff`` and ``gzip_min_bytes``
    mean what they mean for ``send_events``. ``send`` may be called from any thread.
    Senders not closed explicitly are closed at interpreter exit, each taking at most
    ``EXIT_FLUSH_TIMEOUT`` seconds to deliver what it holds. In a child process made by
    ``os.fork`` the sender starts empty and works as in the parent.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        batch_size: int = 500,
        interval: float = 1.0,
        max_buffer: int = 100_000,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        gzip_min_bytes: int = 16_384,
    ) -> None:
        _check_url(url)
        _check_retry_options(timeout, retries, backoff, max_backoff)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be at least 1, not {max_buffer}")
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.url = url
        self._token = token
        self._batch_size = batch_size
        self._interval = interval
        self._max_buffer = max_buffer
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._gzip_min_bytes = gzip_min_bytes
        self._closed = False
        self._init_state()
        _live_senders.add(self)

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._buffer: deque[tuple[int, bytes]] = deque()  # (sequence number, the event as JSON), oldest first
        self._inflight: list[tuple[int, bytes]] = []
        self._doomed = 0  # in-flight events dropped (to make room) if their batch comes back undelivered
        self._seq = 0  # sequence number of the last event enqueued
        self._flush_target = 0  # events up to this sequence number are sent without waiting for a full batch
        self._wake = False  # a flush asked to retry now rather than after the pause following a failure
        self._deadline = 0.0  # when the waiting events go even if fewer than batch_size
        self._counts = {"sent": 0, "failed": 0, "dropped": 0, "batches": 0}
        self._unreported_drops = 0
        self._last_drop_warning = -math.inf
        self._last_outage_warning = -math.inf  # used by the sending thread only

    @property
    def stats(self) -> dict[str, int]:
        """Event counts: ``sent`` (accepted by the server), ``failed`` (refused by it), ``dropped``
        (lost to a full buffer or to closing before delivery), ``batches`` (requests the server
        accepted) and ``pending`` (held now, waiting or in flight)."""
        with self._lock:
            return {**self._counts, "pending": len(self._buffer) + len(self._inflight)}

    def send(self, event: Mapping[str, Any]) -> None:
        """Enqueue one event; returns at once.

        Raises ``TypeError`` or ``ValueError`` if the event is not a JSON-encodable mapping,
        ``RuntimeError`` once the sender is closed.
        """
        data = _encode_event(event)
        with self._cond:
            if self._closed:
                raise RuntimeError("this EventSender is closed")
            if not self._buffer:
                self._deadline = time.monotonic() + self._interval
            self._seq += 1
            self._buffer.append((self._seq, data))
            dropped = self._trim()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="insights-sender", daemon=True)
                self._thread.start()
            if len(self._buffer) == 1 or len(self._buffer) == self._batch_size:
                self._cond.notify_all()
            warning = self._drop_warning() if dropped else None
        if warning:
            log.warning(*warning)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event enqueued before this call has been dealt with.

        Returns True once each of them was accepted or refused by the server, or dropped
        (see ``stats``); False if ``timeout`` seconds passed first. Waiting events are sent at
        once rather than at the end of their interval.
        """
        if threading.current_thread() is self._thread:
            return False  # the sending thread cannot wait for itself
        with self._cond:
            target = self._seq
            if self._oldest_pending() > target:
                return True
            self._flush_target = max(self._flush_target, target)
            self._wake = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._oldest_pending() > target, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is buffered (waiting at most ``timeout`` seconds) and stop the thread.

        Events still undelivered then are dropped, counted and logged as an error. The thread
        gets up to ``CLOSE_GRACE`` more seconds to stop. Closing again does nothing.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
        _live_senders.discard(self)
        deadline = time.monotonic() + timeout
        self.flush(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()) + CLOSE_GRACE)
            if thread.is_alive():
                log.error("closed while a request was still in flight; its events may be lost")

    # -- the sending thread -------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                batch = self._take_batch()
            if batch is None:
                self._discard_remaining()
                return
            try:
                requeue = self._deliver(batch)
            except Exception:  # a bug: keep the events and the thread
                log.exception("unexpected error while sending %d events; keeping them to send again", len(batch))
                requeue = batch
            with self._cond:
                dropped = self._settle(requeue)
                warning = self._drop_warning() if dropped or self._unreported_drops else None
                self._cond.notify_all()
            if warning:
                log.warning(*warning)
            if requeue:
                failures += 1
                self._pause(failures)
            else:
                failures = 0

    def _take_batch(self) -> list[tuple[int, bytes]] | None:
        """Wait for a batch to be due and move it in flight; None once stopping."""
        while not self._stop.is_set():
            if self._buffer:
                now = time.monotonic()
                if (
                    len(self._buffer) >= self._batch_size
                    or now >= self._deadline
                    or self._buffer[0][0] <= self._flush_target
                ):
                    count = min(self._batch_size, len(self._buffer))
                    self._inflight = [self._buffer.popleft() for _ in range(count)]
                    self._deadline = now + self._interval
                    self._wake = False
                    return self._inflight
                self._cond.wait(self._deadline - now)
            else:
                self._cond.wait()
        return None

    def _deliver(self, batch: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """Send ``batch``; return the events to keep for a later attempt."""
        try:
            answer = _post(
                self.url,
                _join([data for _, data in batch]),
                len(batch),
                token=self._token,
                timeout=self._timeout,
                retries=self._retries,
                backoff=self._backoff,
                max_backoff=self._max_backoff,
                gzip_min_bytes=self._gzip_min_bytes,
                sleep=self._retry_sleep,
            )
        except SendError as exc:
            if exc.retryable:
                level = logging.INFO
                if time.monotonic() - self._last_outage_warning >= OUTAGE_WARNING_INTERVAL:
                    self._last_outage_warning = time.monotonic()
                    level = logging.WARNING
                log.log(level, "could not deliver %d events (%s); keeping them to send again", len(batch), exc)
                return batch
            if exc.status == 413 and len(batch) > 1:
                half = len(batch) // 2
                first = self._deliver(batch[:half])
                return first + batch[half:] if first else self._deliver(batch[half:])
            log.error("%d events are lost: %s", len(batch), exc)
            with self._lock:
                self._counts["failed"] += len(batch)
            return []
        rejected = min(_rejected_count(answer), len(batch))
        with self._lock:
            self._counts["sent"] += len(batch) - rejected
            self._counts["failed"] += rejected
            self._counts["batches"] += 1
        return []

    def _settle(self, requeue: list[tuple[int, bytes]]) -> int:
        """Put undelivered events back in front (under the lock); return how many were dropped."""
        self._inflight = []
        self._doomed = 0
        if not requeue:
            return 0
        self._buffer.extendleft(reversed(requeue))
        self._deadline = time.monotonic()
        return self._trim()

    def _pause(self, failures: int) -> None:
        """After a batch failed: wait longer the more batches failed in a row, unless a flush asks."""
        base = min(self._max_backoff, max(self._backoff, self._interval) * 2 ** min(failures - 1, 32))
        delay = base / 2 + random.uniform(0, base / 2)
        with self._cond:
            self._cond.wait_for(lambda: self._stop.is_set() or self._wake, delay)
            self._wake = False

    def _retry_sleep(self, delay: float) -> bool:
        return not self._stop.wait(delay)

    def _discard_remaining(self) -> None:
        with self._cond:
            lost = len(self._buffer)
            self._buffer.clear()
            self._counts["dropped"] += lost
            self._cond.notify_all()
        if lost:
            log.error("closed with %d events undelivered; they are dropped", lost)

    # -- bookkeeping (under the lock) ---------------------------------------------------

    def _oldest_pending(self) -> int:
        if self._inflight:
            return self._inflight[0][0]
        if self._buffer:
            return self._buffer[0][0]
        return self._seq + 1

    def _trim(self) -> int:
        """Drop the oldest events beyond ``max_buffer``; return how many were dropped now."""
        dropped = 0
        while len(self._buffer) + len(self._inflight) - self._doomed > self._max_buffer:
            if self._doomed < len(self._inflight):
                self._doomed += 1  # the oldest are in flight: dropped only if they come back
            else:
                self._buffer.popleft()
                dropped += 1
        self._counts["dropped"] += dropped
        self._unreported_drops += dropped
        return dropped

    def _drop_warning(self) -> tuple[Any, ...] | None:
        now = time.monotonic()
        if not self._unreported_drops or now - self._last_drop_warning < DROP_WARNING_INTERVAL:
            return None
        warning = (
            "event buffer full (%d events, the server is unreachable or slow): dropped the %d oldest events "
            "(%d dropped in all)",
            self._max_buffer,
            self._unreported_drops,
            self._counts["dropped"],
        )
        self._unreported_drops = 0
        self._last_drop_warning = now
        return warning

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread and events stay with the parent."""
        self._init_state()


class InsightsHandler(logging.Handler):
    """A logging handler that sends each record as an event through an ``EventSender``.

    A record whose message is a JSON object (or whose ``msg`` is a mapping, logged without
    arguments) is sent as that object. Any other message is sent as ``{"message": ...,
    "logger": ..., "level": ..., "time": ...}``, ``time`` being the record's creation time
    in ISO 8601, UTC. ``sender_options`` are ``EventSender``'s keyword arguments;
    ``flush_timeout`` bounds how long ``flush`` and ``close`` wait for delivery.
    Records of this module's own logger are never sent.
    """

    def __init__(
        self, url: str, *, level: int | str = logging.NOTSET, flush_timeout: float = 5.0, **sender_options: Any
    ) -> None:
        super().__init__(level)
        self.sender = EventSender(url, **sender_options)
        self.flush_timeout = flush_timeout

    def emit(self, record: logging.LogRecord) -> None:
        """Enqueue the record's event; problems go to ``handleError``, never to the caller."""
        try:
            name = record.name or ""
            if name == log.name or name.startswith(log.name + "."):
                return
            self.sender.send(self.event_from_record(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def event_from_record(self, record: logging.LogRecord) -> dict[str, Any]:
        """The event a record stands for."""
        if isinstance(record.msg, Mapping) and not record.args:
            return dict(record.msg)
        message = record.getMessage()
        if message.lstrip().startswith("{"):
            try:
                value = json.loads(message)
            except ValueError:
                value = None
            if isinstance(value, dict):
                return value
        # timezone.utc rather than datetime.UTC (Python 3.11+): LMSs vendoring this file may run older Pythons
        return {
            "message": message,
            "logger": record.name,
            "level": record.levelname,
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),  # noqa: UP017
        }

    def flush(self) -> None:
        """Wait (at most ``flush_timeout`` seconds) until the events emitted so far are delivered."""
        self.sender.flush(self.flush_timeout)

    def close(self) -> None:
        """Deliver what is buffered (at most ``flush_timeout`` seconds) and stop the sender."""
        try:
            self.sender.close(self.flush_timeout)
        finally:
            super().close()


# -- HTTP ---------------------------------------------------------------------------------


class _Failure(Exception):
    """One attempt failed."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        body: Any = None,
        retryable: bool,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.body = body
        self.retryable = retryable
        self.retry_after = retry_after


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects surface as errors: following one would turn the POST into a GET and lose the events."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _post(
    url: str,
    body: bytes,
    count: int,
    *,
    token: str | None,
    timeout: float,
    retries: int,
    backoff: float,
    max_backoff: float,
    gzip_min_bytes: int,
    sleep: Callable[[float], bool | None] = time.sleep,
) -> dict[str, Any]:
    """POST a JSON array of ``count`` events with retries. ``sleep`` returning False gives up early."""
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if len(body) >= gzip_min_bytes:
        body = gzip.compress(body, compresslevel=6)
        headers["Content-Encoding"] = "gzip"
    attempt = 0
    while True:
        attempt += 1
        try:
            answer = _request(url, body, headers, timeout)
        except _Failure as failure:
            if not failure.retryable:
                raise SendError(
                    f"the server refused {count} events: {failure.reason}", status=failure.status, body=failure.body
                ) from None
            if attempt > retries:
                raise SendError(
                    f"gave up after {attempt} attempt{'s' if attempt > 1 else ''}: {failure.reason}",
                    status=failure.status,
                    body=failure.body,
                    retryable=True,
                ) from None
            delay = _retry_delay(attempt, backoff, max_backoff, failure.retry_after)
            log.info("attempt %d of %d failed (%s); retrying in %.2f s", attempt, retries + 1, failure.reason, delay)
            if sleep(delay) is False:
                raise SendError(
                    f"stopped after {attempt} attempts: {failure.reason}",
                    status=failure.status,
                    body=failure.body,
                    retryable=True,
                ) from None
            continue
        rejected = _rejected(answer)
        if rejected:
            first = rejected[0] if isinstance(rejected[0], Mapping) else {}
            log.warning(
                "the server rejected %d of %d events (first: #%s: %s)",
                _rejected_count(answer),
                count,
                first.get("index", "?"),
                first.get("error", "no reason given"),
            )
        return answer


def _request(url: str, body: bytes, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout) as response:
            status = response.status
            raw = response.read()
    except urllib.error.HTTPError as exc:
        try:
            raw = exc.read()
        except Exception:
            raw = b""
        finally:
            exc.close()
        answer = _decode(raw)
        retryable = exc.code == 429 or exc.code >= 500
        raise _Failure(
            f"HTTP {exc.code}: {_describe(answer, exc.reason)}",
            status=exc.code,
            body=answer,
            retryable=retryable,
            retry_after=_retry_after(exc.headers.get("Retry-After")) if retryable else None,
        ) from None
    except urllib.error.URLError as exc:
        # a certificate the client does not trust will not become trusted by retrying
        retryable = not isinstance(exc.reason, ssl.SSLCertVerificationError)
        raise _Failure(f"cannot reach the server: {exc.reason}", retryable=retryable) from None
    except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, garbled answers
        raise _Failure(f"{type(exc).__name__}: {exc or 'no answer'}", retryable=True) from None
    answer = _decode(raw)
    if isinstance(answer, dict):
        return answer
    return {"status": status, "body": answer}


def _decode(raw: bytes) -> Any:
    """An answer's body: its JSON if it is JSON, else its text; None if empty."""
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _describe(answer: Any, reason: Any) -> str:
    if isinstance(answer, Mapping) and answer.get("error"):
        return str(answer["error"])
    if isinstance(answer, str) and answer.strip():
        text = answer.strip()
        return text if len(text) <= 500 else text[:500] + "..."
    return str(reason or "no details")


def _retry_after(value: str | None) -> float | None:
    """A numeric ``Retry-After`` in seconds; None when absent or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _retry_delay(attempt: int, backoff: float, max_backoff: float, retry_after: float | None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): full jitter, capped."""
    if retry_after is not None:
        return min(retry_after, max_backoff)
    return random.uniform(0, min(max_backoff, backoff * 2 ** min(attempt - 1, 32)))


def _rejected(answer: Mapping[str, Any]) -> list[Any]:
    """The rejections the server listed (the first ones: it counts them all in ``rejected_count``)."""
    rejected = answer.get("rejected")
    return rejected if isinstance(rejected, list) else []


def _rejected_count(answer: Mapping[str, Any]) -> int:
    """How many events the server rejected: ``rejected_count``, else (older servers) the listed ones."""
    count = answer.get("rejected_count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        return count
    return len(_rejected(answer))


# -- encoding and checks ------------------------------------------------------------------


def _encode_event(event: Mapping[str, Any]) -> bytes:
    if not isinstance(event, Mapping):
        raise TypeError(f"an event must be a mapping (a dict), not {type(event).__name__}")
    return json.dumps(event, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _join(encoded: list[bytes]) -> bytes:
    return b"[" + b",".join(encoded) + b"]"


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the URL must be an http(s) URL of the event endpoint, not {url!r}")


def _check_retry_options(timeout: float, retries: int, backoff: float, max_backoff: float) -> None:
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout}")
    if retries < 0:
        raise ValueError(f"retries must not be negative, not {retries}")
    if not (backoff >= 0 and max_backoff >= 0):
        raise ValueError(f"backoff and max_backoff must not be negative, not {backoff} and {max_backoff}")


# -- process lifecycle --------------------------------------------------------------------

_live_senders: weakref.WeakSet[EventSender] = weakref.WeakSet()


def _close_at_exit() -> None:
    for sender in list(_live_senders):
        try:
            sender.close(EXIT_FLUSH_TIMEOUT)
        except Exception:
            log.exception("could not close an EventSender at exit")


def _reset_after_fork() -> None:
    for sender in list(_live_senders):
        sender._after_fork()


atexit.register(_close_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
