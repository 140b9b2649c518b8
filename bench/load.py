"""Load generation: Open edX-like events, HTTP posting, and waiting for the batch records."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from tasks.pipeline.batch_store import DONE, BatchStore

EVENT_TYPES = ("play_video", "pause_video", "seek_video", "problem_check", "page_close", "edx.ui.lms.link_clicked")
AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def make_events(count: int, nonce: str | None = None, seed: int = 7) -> Iterator[dict]:
    """``count`` Open edX-like tracking events (~450-550 bytes of JSON each), all different."""
    nonce = nonce or uuid.uuid4().hex[:12]
    rng = random.Random(seed)
    base = time.time()
    for n in range(count):
        user = rng.randrange(5000)
        kind = EVENT_TYPES[n % len(EVENT_TYPES)]
        block = f"block-v1:Org+CS101+2024+type@video+block@{rng.randrange(400):08x}"
        yield {
            "n": n,
            "username": f"learner{user}",
            "event_type": kind,
            "name": kind,
            "event_source": "browser",
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + n / 1000)) + f".{n % 1000:03d}+00:00",
            "ip": f"10.{user % 256}.{n % 256}.{rng.randrange(256)}",
            "agent": AGENT,
            "host": "courses.example.org",
            "session": f"{nonce}{n:020x}",
            "page": f"https://courses.example.org/courses/course-v1:Org+CS101+2024/courseware/{n % 37}/",
            "context": {"user_id": user, "course_id": "course-v1:Org+CS101+2024", "org_id": "Org", "path": "/event"},
            "event": {"id": block, "code": "html5", "currentTime": round(rng.random() * 600, 3)},
        }


def make_bodies(events: int, per_request: int, nonce: str | None = None) -> list[bytes]:
    """Pre-serialized JSON arrays of ``per_request`` events (``events`` in all)."""
    stream = make_events(events, nonce)
    bodies = []
    for start in range(0, events, per_request):
        chunk = [next(stream) for _ in range(min(per_request, events - start))]
        bodies.append(json.dumps(chunk, separators=(",", ":")).encode())
    return bodies


@dataclass
class Accepted:
    """One 202: the receipt, how many events, and when it was sent and answered."""

    receipt: str
    events: int
    sent: float  # wall clock (time.time), comparable with batch records' "finished"
    accepted: float


class Poster:
    """POSTs bodies to ``/event`` over one persistent HTTP connection per thread."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.local = threading.local()

    def post(self, body: bytes) -> Accepted:
        """Send one body; returns its acceptance, raises on anything but 202."""
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
        sent = time.time()
        try:
            connection.request("POST", "/event", body, headers)
            response = connection.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):
            connection.close()  # a server that closed the idle connection: reconnect once
            connection.request("POST", "/event", body, headers)
            response = connection.getresponse()
            data = response.read()
        accepted = time.time()
        if response.status != 202:
            raise RuntimeError(f"POST /event answered {response.status}: {data[:300]!r}")
        answer = json.loads(data)
        return Accepted(answer["receipt"], answer["accepted"], sent, accepted)


def post_all(base_url: str, bodies: list[bytes], clients: int) -> list[Accepted]:
    """POST every body as fast as ``clients`` threads can; returns the acceptances in order."""
    poster = Poster(base_url)
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(poster.post, bodies))


def post_paced(base_url: str, bodies: list[bytes], interval: float, clients: int = 4) -> list[Accepted]:
    """POST one body every ``interval`` seconds (monotonic schedule, no drift), never waiting on answers."""
    poster = Poster(base_url)
    with ThreadPoolExecutor(clients) as pool:
        futures = []
        start = time.monotonic()
        for k, body in enumerate(bodies):
            delay = start + k * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(poster.post, body))
        return [f.result() for f in futures]


def wait_done(store: BatchStore, receipts: Iterable[str], timeout: float) -> dict[str, float]:
    """Wait until every receipt is done; returns, per receipt, the latest "finished" of its batches.

    Receipts not done within ``timeout`` are missing from the answer.
    """
    pending = set(receipts)
    finished: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for receipt in list(pending):
            state = store.receipt(receipt)
            if state["state"] != DONE:
                continue
            records = [store.get(batch) for batch in state["batches"]]
            finished[receipt] = max((r["finished"] for r in records if r), default=0.0)
            pending.discard(receipt)
        if pending:
            time.sleep(0.05)
    return finished


def percentiles(values: list[float], points: Iterable[float] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles plus the maximum of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return {}
    answer = {f"p{p:g}": ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] for p in points}
    answer["max"] = ordered[-1]
    return answer
