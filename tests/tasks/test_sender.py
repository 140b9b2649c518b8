"""The stdlib event sender against a real local HTTP server whose answers each test scripts."""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tasks import sender as sender_module
from tasks.sender import EventSender, InsightsHandler, SendError, send_events

T = TypeVar("T")
Answer = tuple[int, dict[str, str], Any]  # status, extra headers, JSON body
Responder = Callable[[int, "Received"], Answer]

UNAVAILABLE: Answer = (503, {}, {"error": "the broker did not accept the events", "status": 503})
SENDER_LOG = "insights.sender"
PATIENCE = 60.0  # how long a test waits for what must happen (waits end as soon as it does)
HOUR = 3600  # an interval no test waits out: a batch that leaves was flushed, not timed out


@dataclass
class Received:
    """One request as the server saw it."""

    headers: Message  # case-insensitive
    raw: bytes
    events: list[dict[str, Any]]
    at: float = field(default_factory=time.monotonic)
    status: int = 0


def accept(index: int, received: Received) -> Answer:
    """What Insights answers when it takes every event."""
    return 202, {}, {"receipt": f"r{index}", "accepted": len(received.events), "duplicates": 0, "rejected": []}


def script(*answers: Answer, then: Responder = accept) -> Responder:
    """Answer the first requests with ``answers`` in turn, the later ones with ``then``."""

    def respond(index: int, received: Received) -> Answer:
        return answers[index] if index < len(answers) else then(index, received)

    return respond


class Server:
    """A real HTTP server on 127.0.0.1 recording every request and answering as ``respond`` says."""

    def __init__(self, respond: Responder = accept, port: int = 0) -> None:
        self.respond = respond
        self.received: list[Received] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                received = Received(self.headers, raw, json.loads(body))
                with server._lock:
                    index = len(server.received)
                    server.received.append(received)
                status, headers, payload = server.respond(index, received)
                received.status = status
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/event"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """The events of every request answered with a 2xx, in arrival order."""
        return [event for r in self.received if 200 <= r.status < 300 for event in r.events]

    @property
    def sizes(self) -> list[int]:
        return [len(r.events) for r in self.received]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def events(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [{"event_type": "test", "i": i, **extra} for i in range(start, start + n)]


def closed_port() -> int:
    """A port nothing listens on (until a test starts a server there)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(probe: Callable[[], T], timeout: float = PATIENCE, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)
    return value


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts (append them); stopped afterwards."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def server(servers: list[Server]) -> Server:
    servers.append(Server())
    return servers[0]


@pytest.fixture
def make_sender() -> Iterator[Callable[..., EventSender]]:
    """Build EventSenders closed after the test."""
    made: list[EventSender] = []

    def make(url: str, **options: Any) -> EventSender:
        made.append(EventSender(url, **options))
        return made[-1]

    yield make
    for sender in made:
        sender.close(timeout=1)


@pytest.fixture
def sender_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=SENDER_LOG)
    return caplog


def logged(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]


FAST: dict[str, Any] = {"backoff": 0.01, "max_backoff": 0.05}


# -- send_events ------------------------------------------------------------------------------------------------


def test_send_events_posts_json_and_returns_the_answer(server: Server) -> None:
    batch = events(3)
    answer = send_events(server.url, batch, token="s3cret")
    assert answer == {"receipt": "r0", "accepted": 3, "duplicates": 0, "rejected": []}
    (request,) = server.received
    assert request.events == batch
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert "Content-Encoding" not in request.headers


def test_no_token_no_authorization_header(server: Server) -> None:
    send_events(server.url, events(1))
    assert "Authorization" not in server.received[0].headers


def test_retries_after_503(server: Server) -> None:
    server.respond = script(UNAVAILABLE, UNAVAILABLE)
    batch = events(2)
    answer = send_events(server.url, batch, **FAST)
    assert answer["receipt"] == "r2"
    assert [r.status for r in server.received] == [503, 503, 202]
    assert all(r.events == batch for r in server.received)


def test_gives_up_after_the_retries(server: Server) -> None:
    server.respond = script(then=lambda i, r: UNAVAILABLE)
    with pytest.raises(SendError) as info:
        send_events(server.url, events(1), retries=2, **FAST)
    assert info.value.status == 503
    assert info.value.retryable
    assert info.value.body == UNAVAILABLE[2]
    assert "3 attempts" in str(info.value)
    assert len(server.received) == 3


def test_retries_until_the_server_is_up(servers: list[Server], sender_log: pytest.LogCaptureFixture) -> None:
    port = closed_port()

    def start_once_refused() -> None:  # the server comes up only after an attempt found it down
        wait_for(lambda: logged(sender_log, logging.INFO, "cannot reach the server"), what="a refused attempt")
        servers.append(Server(port=port))

    starter = threading.Thread(target=start_once_refused)
    starter.start()
    try:  # retries enough to outlast any delay in starting the server (about a minute of them)
        answer = send_events(f"http://127.0.0.1:{port}/event", events(2), retries=1000, backoff=0.02, max_backoff=0.1)
    finally:
        starter.join()
    assert answer["accepted"] == 2
    assert servers[0].received[0].events == events(2)


def test_connection_refused_gives_up_with_no_status() -> None:
    with pytest.raises(SendError) as info:
        send_events(f"http://127.0.0.1:{closed_port()}/event", events(1), retries=2, **FAST)
    assert info.value.status is None
    assert info.value.body is None
    assert info.value.retryable
    assert "cannot reach the server" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_client_errors_are_not_retried(server: Server, status: int) -> None:
    refusal = {"error": "events must be JSON objects", "status": status}
    server.respond = script(then=lambda i, r: (status, {}, refusal))
    with pytest.raises(SendError) as info:
        send_events(server.url, events(1), **FAST)
    assert info.value.status == status
    assert info.value.body == refusal
    assert not info.value.retryable
    assert "events must be JSON objects" in str(info.value)
    assert len(server.received) == 1


def test_redirects_are_not_followed(server: Server) -> None:
    server.respond = script(then=lambda i, r: (307, {"Location": "/elsewhere"}, {"error": "moved"}))
    with pytest.raises(SendError) as info:
        send_events(server.url, events(1), **FAST)
    assert info.value.status == 307
    assert len(server.received) == 1


def test_429_is_retried_after_retry_after(server: Server) -> None:
    server.respond = script((429, {"Retry-After": "1"}, {"error": "slow down", "status": 429}))
    answer = send_events(server.url, events(1), backoff=0.01)
    assert answer["receipt"] == "r1"
    first, second = server.received
    assert second.at - first.at >= 0.95


def test_retry_after_is_capped_by_max_backoff(server: Server, sender_log: pytest.LogCaptureFixture) -> None:
    server.respond = script((503, {"Retry-After": "3600"}, {"error": "down for maintenance"}))
    send_events(server.url, events(1), backoff=0.01, max_backoff=0.05)  # an hour's wait would time the test out
    assert logged(sender_log, logging.INFO, "retrying in 0.05 s")  # the delay it chose: capped, not 3600 s
    assert [r.status for r in server.received] == [503, 202]


def test_large_bodies_are_gzipped(server: Server) -> None:
    big = events(20, pad="x" * 1000)  # about 20 KB of JSON
    send_events(server.url, big)
    send_events(server.url, events(2))
    send_events(server.url, events(2), gzip_min_bytes=0)
    large, small, forced = server.received
    assert large.headers["Content-Encoding"] == "gzip"
    assert large.events == big
    assert len(large.raw) < 16_384
    assert "Content-Encoding" not in small.headers
    assert forced.headers["Content-Encoding"] == "gzip"
    assert forced.events == events(2)


def test_rejected_items_are_a_success_with_a_warning(server: Server, sender_log: pytest.LogCaptureFixture) -> None:
    rejection = {"receipt": "r0", "accepted": 2, "duplicates": 0, "rejected": [{"index": 1, "error": "no event_type"}]}
    server.respond = script((202, {}, rejection))
    assert send_events(server.url, events(3)) == rejection
    assert logged(sender_log, logging.WARNING, "rejected 1 of 3 events (first: #1: no event_type)")


def test_bad_arguments_are_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="http"):
        send_events("ftp://example.org/event", events(1))
    with pytest.raises(ValueError, match="no events"):
        send_events("http://127.0.0.1:1/event", [])
    with pytest.raises(TypeError, match="mapping"):
        send_events("http://127.0.0.1:1/event", ["not an event"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        send_events("http://127.0.0.1:1/event", [{"score": float("nan")}])
    with pytest.raises(TypeError):
        send_events("http://127.0.0.1:1/event", [{"when": object()}])


# -- EventSender ------------------------------------------------------------------------------------------------


def test_batches_by_size(server: Server, make_sender: Callable[..., EventSender]) -> None:
    sender = make_sender(server.url, batch_size=10, interval=HOUR)
    batch = events(25)
    for event in batch:
        sender.send(event)
    wait_for(lambda: len(server.received) == 2, what="the two full batches")
    assert sender.flush(PATIENCE)  # the last 5 would otherwise wait an hour
    assert server.sizes == [10, 10, 5]
    assert server.accepted == batch
    assert sender.stats == {"sent": 25, "failed": 0, "dropped": 0, "batches": 3, "pending": 0}


def test_batches_by_interval(server: Server, make_sender: Callable[..., EventSender]) -> None:
    sender = make_sender(server.url, batch_size=1000, interval=0.5)  # the three sends below take far less
    for event in events(3):
        sender.send(event)
    wait_for(lambda: server.received, what="the first batch")
    for event in events(2, start=3):
        sender.send(event)
    wait_for(lambda: len(server.received) == 2, what="the second batch")
    assert server.sizes == [3, 2]
    assert server.accepted == events(5)
    wait_for(lambda: sender.stats["sent"] == 5, what="the second answer")


def test_flush_with_nothing_sent_returns_at_once(make_sender: Callable[..., EventSender]) -> None:
    sender = make_sender(f"http://127.0.0.1:{closed_port()}/event")
    assert sender.flush(0)


def test_events_are_kept_while_the_server_is_down(
    servers: list[Server], make_sender: Callable[..., EventSender], sender_log: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    sender = make_sender(f"http://127.0.0.1:{port}/event", batch_size=4, interval=0.05, retries=1, **FAST)
    batch = events(10)
    for event in batch:
        sender.send(event)
    wait_for(lambda: logged(sender_log, logging.WARNING, "keeping them to send again"), what="a failed batch")
    assert sender.stats["pending"] == 10
    servers.append(Server(port=port))
    assert sender.flush(PATIENCE)
    assert servers[0].accepted == batch
    assert sender.stats == {"sent": 10, "failed": 0, "dropped": 0, "batches": 3, "pending": 0}


def test_events_are_kept_while_the_server_answers_503(server: Server, make_sender: Callable[..., EventSender]) -> None:
    down = threading.Event()
    down.set()
    server.respond = lambda i, r: UNAVAILABLE if down.is_set() else accept(i, r)
    sender = make_sender(server.url, batch_size=3, interval=0.02, retries=0, **FAST)
    batch = events(7)
    for event in batch:
        sender.send(event)
    wait_for(lambda: len(server.received) >= 4, what="several refused attempts")
    down.clear()
    assert sender.flush(PATIENCE)
    assert server.accepted == batch
    assert sender.stats["sent"] == 7


def test_a_full_buffer_drops_the_oldest_events(
    server: Server, make_sender: Callable[..., EventSender], sender_log: pytest.LogCaptureFixture
) -> None:
    sender = make_sender(server.url, batch_size=100, interval=HOUR, max_buffer=5)
    batch = events(8)
    for event in batch:
        sender.send(event)
    assert sender.stats["dropped"] == 3
    assert sender.stats["pending"] == 5
    assert logged(sender_log, logging.WARNING, "dropped the 1 oldest events")
    assert sender.flush(PATIENCE)
    assert server.accepted == batch[3:]
    assert sender.stats == {"sent": 5, "failed": 0, "dropped": 3, "batches": 1, "pending": 0}


def test_a_buffer_full_during_an_outage_keeps_the_newest(
    server: Server, make_sender: Callable[..., EventSender]
) -> None:
    down = threading.Event()
    down.set()
    server.respond = lambda i, r: UNAVAILABLE if down.is_set() else accept(i, r)
    sender = make_sender(server.url, batch_size=3, interval=0.01, max_buffer=6, retries=0, **FAST)
    batch = events(20)
    for event in batch:
        sender.send(event)
    wait_for(lambda: sender.stats["dropped"] == 14, what="the overflow to be settled")
    down.clear()
    assert sender.flush(PATIENCE)
    assert server.accepted == batch[14:]
    assert sender.stats == {"sent": 6, "failed": 0, "dropped": 14, "batches": 2, "pending": 0}


def test_a_refused_batch_is_counted_as_failed(
    server: Server, make_sender: Callable[..., EventSender], sender_log: pytest.LogCaptureFixture
) -> None:
    server.respond = script((400, {}, {"error": "event 0 is not a JSON object", "status": 400}))
    sender = make_sender(server.url, batch_size=2, interval=HOUR, **FAST)
    for event in events(4):
        sender.send(event)
    assert sender.flush(PATIENCE)
    assert server.sizes == [2, 2]
    assert server.accepted == events(2, start=2)
    assert sender.stats == {"sent": 2, "failed": 2, "dropped": 0, "batches": 1, "pending": 0}
    assert logged(sender_log, logging.ERROR, "event 0 is not a JSON object")


def test_rejected_items_are_counted_as_failed(server: Server, make_sender: Callable[..., EventSender]) -> None:
    server.respond = script((202, {}, {"accepted": 2, "duplicates": 0, "rejected": [{"index": 0, "error": "bad"}]}))
    sender = make_sender(server.url, batch_size=3, interval=HOUR)
    for event in events(3):
        sender.send(event)
    assert sender.flush(PATIENCE)
    assert sender.stats == {"sent": 2, "failed": 1, "dropped": 0, "batches": 1, "pending": 0}


def test_a_batch_too_large_is_split(server: Server, make_sender: Callable[..., EventSender]) -> None:
    too_large: Answer = (413, {}, {"error": "too large", "status": 413})
    server.respond = lambda i, r: too_large if len(r.events) > 2 else accept(i, r)
    sender = make_sender(server.url, batch_size=8, interval=HOUR)
    batch = events(8)
    for event in batch:
        sender.send(event)
    assert sender.flush(PATIENCE)
    assert server.accepted == batch
    assert sender.stats == {"sent": 8, "failed": 0, "dropped": 0, "batches": 4, "pending": 0}


def test_send_from_many_threads(server: Server, make_sender: Callable[..., EventSender]) -> None:
    sender = make_sender(server.url, batch_size=50, interval=0.02)

    def produce(thread: int) -> None:
        for i in range(100):
            sender.send({"thread": thread, "i": i})

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sender.flush(PATIENCE)
    received = server.accepted
    assert len(received) == 800
    for t in range(8):
        assert [e["i"] for e in received if e["thread"] == t] == list(range(100))
    assert sender.stats["sent"] == 800


def test_flush_times_out_and_close_drops_what_is_left(
    make_sender: Callable[..., EventSender], sender_log: pytest.LogCaptureFixture
) -> None:
    sender = make_sender(f"http://127.0.0.1:{closed_port()}/event", interval=0.01, retries=0, **FAST)
    for event in events(3):
        sender.send(event)
    assert not sender.flush(0.2)
    sender.close(timeout=0.2)
    assert sender.stats == {"sent": 0, "failed": 0, "dropped": 3, "batches": 0, "pending": 0}
    assert logged(sender_log, logging.ERROR, "closed with 3 events undelivered")
    sender.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        sender.send({"event_type": "late"})


def test_close_delivers_what_is_buffered(server: Server) -> None:
    sender = EventSender(server.url, batch_size=100, interval=HOUR)
    for event in events(5):
        sender.send(event)
    sender.close(timeout=PATIENCE)
    assert server.accepted == events(5)
    assert sender.stats["sent"] == 5


def test_send_refuses_what_is_not_json(make_sender: Callable[..., EventSender]) -> None:
    sender = make_sender(f"http://127.0.0.1:{closed_port()}/event")
    with pytest.raises(TypeError):
        sender.send({"when": datetime.now()})
    assert sender.stats["pending"] == 0


def test_vendored_alone_and_flushed_at_exit(server: Server, tmp_path: Path) -> None:
    """The file works with no site-packages at all, and a process exiting without close() still delivers."""
    shutil.copy(sender_module.__file__, tmp_path / "insights_sender.py")
    program = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import insights_sender; "
        f"sender = insights_sender.EventSender({server.url!r}, interval={HOUR}); "
        "[sender.send({'event_type': 'at_exit', 'i': i}) for i in range(3)]"
    )
    subprocess.run([sys.executable, "-I", "-S", "-c", program], check=True, timeout=PATIENCE)
    assert server.accepted == [{"event_type": "at_exit", "i": i} for i in range(3)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_sends_its_own_events(server: Server) -> None:
    sender = EventSender(server.url, batch_size=100, interval=HOUR)
    try:
        sender.send({"from": "parent"})  # the parent's thread runs and holds this event
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child process
            code = 1
            try:
                sender.send({"from": "child"})
                code = 0 if sender.flush(PATIENCE) and sender.stats["sent"] == 1 else 1
            finally:
                os._exit(code)
        deadline = time.monotonic() + 2 * PATIENCE
        while (status := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child did not finish")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(status[1]) == 0
        assert server.accepted == [{"from": "child"}]
        assert sender.flush(PATIENCE)
        assert server.accepted == [{"from": "child"}, {"from": "parent"}]
    finally:
        sender.close(timeout=1)


# -- InsightsHandler --------------------------------------------------------------------------------------------


@pytest.fixture
def tracking_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(f"tests.tracking.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def test_handler_sends_json_messages_and_wraps_plain_ones(server: Server, tracking_logger: logging.Logger) -> None:
    handler = InsightsHandler(server.url, batch_size=100, interval=HOUR, flush_timeout=PATIENCE)
    tracking_logger.addHandler(handler)
    tracking_logger.info(json.dumps({"event_type": "play_video", "user_id": 7}))
    tracking_logger.warning("plain %s", "text")
    tracking_logger.info({"event_type": "from_a_dict"})
    tracking_logger.info("[1, 2]")
    handler.flush()
    play, plain, from_dict, array = server.accepted
    assert play == {"event_type": "play_video", "user_id": 7}
    assert from_dict == {"event_type": "from_a_dict"}
    assert plain.pop("time") and array.pop("time")
    assert plain == {"message": "plain text", "logger": tracking_logger.name, "level": "WARNING"}
    assert array == {"message": "[1, 2]", "logger": tracking_logger.name, "level": "INFO"}


def test_handler_time_is_iso_8601_utc(server: Server, tracking_logger: logging.Logger) -> None:
    handler = InsightsHandler(server.url, batch_size=100, interval=HOUR, flush_timeout=PATIENCE)
    tracking_logger.addHandler(handler)
    before = datetime.now(UTC)
    tracking_logger.info("hello")
    handler.flush()
    when = datetime.fromisoformat(server.accepted[0]["time"])
    assert when.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= when <= datetime.now(UTC)


def test_handler_never_raises(tracking_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = InsightsHandler(
        f"http://127.0.0.1:{closed_port()}/event", flush_timeout=0.2, interval=0.01, retries=0, **FAST
    )
    errors: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", errors.append)
    tracking_logger.addHandler(handler)
    for i in range(20):
        tracking_logger.info(json.dumps({"event_type": "x", "i": i}))  # the server is down
    handler.flush()  # gives up after flush_timeout
    assert errors == []
    tracking_logger.info({"when": object()})  # not JSON
    tracking_logger.removeHandler(handler)
    handler.close()
    handler.emit(logging.makeLogRecord({"msg": "after close"}))
    assert [r.getMessage() for r in errors][1:] == ["after close"]
    assert len(errors) == 2


def test_handler_ignores_the_senders_own_log(server: Server) -> None:
    handler = InsightsHandler(server.url, batch_size=100, interval=HOUR, flush_timeout=PATIENCE)
    own = logging.getLogger(SENDER_LOG)
    own.addHandler(handler)
    try:
        own.warning("a warning about sending")
        logging.getLogger(SENDER_LOG + ".detail").warning("another")
    finally:
        own.removeHandler(handler)
        handler.close()
    assert handler.sender.stats["pending"] == 0
    assert server.received == []
