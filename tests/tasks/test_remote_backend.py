"""``RemoteBackend`` against small real HTTP servers (stdlib ``http.server`` on free loopback ports):
what it does with a redirect and with an oversized answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasks.core.remote import RemoteBackend, RemoteError


@contextmanager
def http_server(answer: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[int]:
    """A threaded HTTP server on a free loopback port whose GET and POST call ``answer``; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer(self)

        def do_POST(self) -> None:
            answer(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def send_json(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """Answer 200 with a JSON body."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_the_token_does_not_follow_a_redirect(status: int) -> None:
    seen: list[str | None] = []

    def target(handler: BaseHTTPRequestHandler) -> None:
        seen.append(handler.headers.get("Authorization"))
        send_json(handler, b"[]")

    with http_server(target) as target_port:
        location = f"http://localhost:{target_port}/schema"  # another origin: the host name differs

        def redirect(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(status)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with http_server(redirect) as port:
            backend = RemoteBackend(f"http://127.0.0.1:{port}", token="s3cr3t-token")
            with pytest.raises(RemoteError) as refused:
                backend.schema()
    assert seen == [], f"the redirect target was called (Authorization: {seen})"
    assert refused.value.status == status and "redirect" in refused.value.message
    assert location in refused.value.message and "s3cr3t" not in str(refused.value)


def test_an_answer_larger_than_the_limit_is_refused() -> None:
    big = b"[" + b"0," * 600 + b"0]"
    with http_server(lambda handler: send_json(handler, big)) as port:
        with pytest.raises(RemoteError) as refused:
            RemoteBackend(f"http://127.0.0.1:{port}", max_response_bytes=1000).schema()
        assert "1000" in refused.value.message and "INSIGHTS_MAX_REQUEST_BYTES" in refused.value.message
        assert RemoteBackend(f"http://127.0.0.1:{port}", max_response_bytes=len(big)).schema() == [0] * 601


def test_a_token_over_plain_http_to_another_host_is_refused() -> None:
    with pytest.raises(ValueError) as refused:
        RemoteBackend("http://b.example:8000", token="s3cr3t-token")
    assert "https" in str(refused.value) and "s3cr3t" not in str(refused.value)
    for url in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000", "https://b.example"):
        RemoteBackend(url, token="s3cr3t-token")
    RemoteBackend("http://b.example:8000")  # no token: nothing to leak
