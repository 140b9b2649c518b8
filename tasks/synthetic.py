"""Synthetic LMS activity: a seeded simulation of learners, rendered in both event formats.

``simulate(config)`` yields neutral :class:`Activity` records (who, course, when, verb,
object, result — the vocabulary of docs/datalayer.md) from one simulated behaviour;
``to_openedx`` and ``to_xapi`` render a record as an Open edX tracking-log event or an
xAPI statement, so that the data layer reads the same six properties back from either.
``generate_files`` writes ``tracking.log`` and ``xapi.jsonl``; on the command line::

    python -m tasks generate --courses 1 --students 50 --days 7 --seed 1 --format both --out DIR

The model: every learner has an engagement level, an ability and a playback speed. Each
day a learner has a Poisson number of sessions (more when engaged, fewer at weekends and
as the course wears on), starting at plausible hours (mostly in the evening). A session
opens the course home page, then walks through units: a page view each, reading text,
watching videos (load, play, pauses, seeks, until the end or a drop-off, likelier later
in the video) and answering problems (up to three attempts, stopping at a correct one;
the chance of success grows with ability and with each attempt). Everyone enrolls in
every course on the first day. The same seed gives the same events.
"""

from __future__ import annotations

import argparse
import gzip as gzip_format
import hashlib
import json
import math
import random
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HOST = "lms.example"
BASE = f"https://{HOST}"
ORG = "DemoX"
DAY = 86400.0
#: Relative chance that a session starts in each hour of the day (UTC): evenings dominate.
HOUR_WEIGHTS = (
    1,
    0.5,
    0.3,
    0.2,
    0.2,
    0.3,
    0.6,
    1,
    1.5,
    2,
    2.2,
    2.2,
    2.5,
    2.5,
    2.5,
    2.5,
    3,
    3.5,
    4.5,
    5.5,
    6.5,
    6.5,
    5,
    3,
)
MAX_ATTEMPTS = 3
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
)

# xAPI vocabulary (docs/datalayer.md)
ADL = "http://adlnet.gov/expapi/verbs/"
VIDEO = "https://w3id.org/xapi/video/"
XAPI_VERBS = {
    "viewed": ADL + "experienced",
    "loaded": VIDEO + "verbs/initialized",
    "played": VIDEO + "verbs/played",
    "paused": VIDEO + "verbs/paused",
    "seeked": VIDEO + "verbs/seeked",
    "stopped": ADL + "completed",
    "answered": ADL + "answered",
    "enrolled": ADL + "registered",
}
XAPI_TYPES = {
    "page": "http://activitystrea.ms/schema/1.0/page",
    "video": VIDEO + "activity-type/video",
    "problem": "http://adlnet.gov/expapi/activities/cmi.interaction",
    "course": "http://adlnet.gov/expapi/activities/course",
}
XAPI_RESULT_EXTENSIONS = {
    "position": VIDEO + "extensions/time",
    "seek_from": VIDEO + "extensions/time-from",
    "seek_to": VIDEO + "extensions/time-to",
}
LENGTH = VIDEO + "extensions/length"
SESSION_ID = VIDEO + "extensions/session-id"
ATTEMPT = "http://id.tincanapi.com/extension/attempt-id"
# Open edX vocabulary
VIDEO_EVENT_TYPES = {
    "loaded": "load_video",
    "played": "play_video",
    "paused": "pause_video",
    "seeked": "seek_video",
    "stopped": "stop_video",
}
VIDEO_FIELDS = {"position": "currentTime", "seek_from": "old_time", "seek_to": "new_time", "duration": "duration"}
NAVIGATION_EVENT_TYPES = ("edx.ui.lms.sequence.next_selected", "seq_goto", "seq_next")


@dataclass
class Config:
    """What to simulate: every one of ``students`` learners takes every one of ``courses`` courses."""

    courses: int = 1
    students: int = 50
    days: int = 7
    seed: int = 1
    start: date = date(2026, 11, 2)
    videos_per_course: int = 6
    problems_per_course: int = 8

    def __post_init__(self) -> None:
        for name in ("courses", "students", "days", "videos_per_course", "problems_per_course"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"Config.{name} must be a whole number >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class Activity:
    """One thing a learner did, in the generic vocabulary, plus what rendering needs.

    ``agent``, ``course``, ``timestamp`` (aware UTC), ``verb``, ``object`` and ``result``
    are what the data layer reads back from either rendering (:meth:`vocabulary`); ``id``
    is the xAPI statement id, ``page`` the page the learner was on, ``user_id`` the LMS's
    numeric user id and ``session`` the browser session.
    """

    id: str
    agent: str
    course: str
    timestamp: datetime
    verb: str
    object: str
    result: dict[str, Any] = field(default_factory=dict)
    page: str | None = None
    user_id: int = 0
    session: str = ""

    def vocabulary(self) -> dict[str, Any]:
        """The six data-layer properties of this record."""
        return {
            "agent": self.agent,
            "verb": self.verb,
            "object": self.object,
            "course": self.course,
            "timestamp": self.timestamp,
            "result": self.result,
        }


# The simulated world ----------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """A courseware unit: a text page, a video (with its length) or a problem (points, difficulty)."""

    kind: str
    page: str
    block: str = ""
    duration: float = 0.0
    max_score: int = 0
    difficulty: float = 0.0


@dataclass(frozen=True)
class Course:
    """A course: its id, home page and units in courseware order."""

    id: str
    home: str
    units: tuple[Unit, ...]


@dataclass
class Learner:
    """A simulated learner and what they have done so far."""

    name: str
    user_id: int
    engagement: float  # 0..1: sessions per day, units per session, persistence
    ability: float  # -1..1: chance of answering correctly
    speed: float  # video playback rate
    shift: int  # hours this learner's day is shifted by
    free_at: float = 0.0  # seconds since the start: no new session before
    progress: dict[str, int] = field(default_factory=dict)  # course -> next unit
    attempts: dict[str, int] = field(default_factory=dict)  # problem -> attempts made
    solved: set[str] = field(default_factory=set)


def _hex(*parts: object) -> str:
    """A stable 32-digit hex block id."""
    return hashlib.md5(":".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()


def build_course(index: int, config: Config) -> Course:
    """Course ``index``: videos and problems alternating, a text page before every fourth of them."""
    rng = random.Random(f"{config.seed}:course:{index}")
    key = f"{ORG}+DS{101 + index}+{config.start.year}_T4"
    course_id = f"course-v1:{key}"
    content = []
    for n in range(max(config.videos_per_course, config.problems_per_course)):
        content += ["video"] * (n < config.videos_per_course) + ["problem"] * (n < config.problems_per_course)
    kinds = []
    for n, kind in enumerate(content or ["html"]):
        kinds += ["html", kind] if n % 4 == 0 and kind != "html" else [kind]
    units = []
    for position, kind in enumerate(kinds):
        chapter, sequential = _hex(course_id, "chapter", position // 6), _hex(course_id, "sequential", position // 3)
        page = f"{BASE}/courses/{course_id}/courseware/{chapter}/{sequential}/{position % 3 + 1}"
        block = f"block-v1:{key}+type@{kind}+block@{_hex(course_id, kind, position)}"
        if kind == "video":
            units.append(Unit(kind, page, block, duration=round(rng.uniform(150, 900), 2)))
        elif kind == "problem":
            units.append(Unit(kind, page, block, max_score=rng.choice((1, 1, 2, 3)), difficulty=rng.uniform(-1, 0.8)))
        else:
            units.append(Unit(kind, page))
    return Course(course_id, f"{BASE}/courses/{course_id}/course/", tuple(units))


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson-distributed count (Knuth's method; means here are small)."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class _Session:
    """One learner's session in one course: emits activities at a clock that only moves forward."""

    def __init__(self, sim: _Simulation, learner: Learner, course: Course, start: float) -> None:
        self.sim, self.rng, self.learner, self.course = sim, sim.rng, learner, course
        self.clock = start
        self.page: str | None = None
        self.session = f"{self.rng.getrandbits(128):032x}"
        self.out: list[Activity] = []

    def emit(self, verb: str, obj: str, result: dict[str, Any] | None = None) -> None:
        """Record an activity now; the next one is at least a millisecond later."""
        self.out.append(
            Activity(
                str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                self.learner.name,
                self.course.id,
                self.sim.origin + timedelta(seconds=self.clock),
                verb,
                obj,
                result or {},
                self.page,
                self.learner.user_id,
                self.session,
            )
        )
        self.clock += 0.001

    def wait(self, low: float, high: float) -> None:
        """Let ``low``..``high`` seconds pass."""
        self.clock += self.rng.uniform(low, high)

    def run(self, enroll: bool) -> float:
        """Enroll (first session), open the course, walk through units; returns the end time."""
        rng, learner = self.rng, self.learner
        if enroll:
            self.emit("enrolled", self.course.id)
            self.wait(5, 60)
        self.page = self.course.home
        self.emit("viewed", self.course.home)
        self.wait(5, 40)
        units = self.course.units
        index = learner.progress.get(self.course.id, 0)
        for _ in range(1 + _poisson(rng, 1 + 5 * learner.engagement)):
            if index >= len(units):  # finished: review something, or leave
                if rng.random() < 0.35:
                    break
                index = rng.randrange(len(units))
            self.visit(units[index])
            learner.progress[self.course.id] = max(learner.progress.get(self.course.id, 0), index + 1)
            index = index + 1 if rng.random() < 0.9 else max(0, index - 1)
            if rng.random() < 0.06:
                break
        return self.clock

    def visit(self, unit: Unit) -> None:
        """View a unit's page, then read it, watch its video or answer its problem."""
        self.page = unit.page
        self.emit("viewed", unit.page)
        self.wait(2, 15)
        if unit.kind == "video":
            self.watch(unit)
        elif unit.kind == "problem":
            self.answer(unit)
        else:
            self.wait(20, 60 + 240 * self.learner.engagement)

    def watch(self, unit: Unit) -> None:
        """Load and play a video: pauses and seeks, until it ends (stopped) or the learner drops off."""
        rng, learner, duration = self.rng, self.learner, unit.duration
        self.emit("loaded", unit.block, {"duration": duration})
        self.wait(1, 6)
        position = 0.0
        self.emit("played", unit.block, {"position": position, "duration": duration})
        for _ in range(40):
            reach = min(duration, position + rng.expovariate(1 / (60 + 120 * learner.engagement)))
            hazard = (0.01 + 0.4 * (reach / duration) ** 2) * (1.3 - learner.engagement)
            if reach < duration and rng.random() < hazard:  # drop off partway
                break
            self.clock += (reach - position) / learner.speed
            position = reach
            if position >= duration:
                self.emit("stopped", unit.block, {"position": duration, "duration": duration})
                self.wait(1, 10)
                return
            choice = rng.random()
            if choice < 0.55:  # pause, think, play on
                self.emit("paused", unit.block, {"position": round(position, 3), "duration": duration})
                self.wait(3, 90)
                self.emit("played", unit.block, {"position": round(position, 3), "duration": duration})
            else:  # seek back to rewatch, or skip ahead; playback goes on
                target = position - rng.uniform(5, 60) if choice < 0.85 else position + rng.uniform(10, 120)
                target = min(max(0.0, target), duration - 1)
                facts = {"seek_from": round(position, 3), "seek_to": round(target, 3), "duration": duration}
                self.emit("seeked", unit.block, facts)
                self.wait(0.5, 3)
                position = target
        reach = position + rng.random() * (min(duration, position + 60) - position)
        self.clock += (reach - position) / learner.speed
        self.emit("paused", unit.block, {"position": round(reach, 3), "duration": duration})
        self.wait(1, 10)

    def answer(self, unit: Unit) -> None:
        """Up to three attempts at a problem in all, none after a correct one."""
        rng, learner, block = self.rng, self.learner, unit.block
        if block in learner.solved or learner.attempts.get(block, 0) >= MAX_ATTEMPTS:
            self.wait(10, 60)
            return
        self.wait(30, 300)
        while learner.attempts.get(block, 0) < MAX_ATTEMPTS:
            attempt = learner.attempts[block] = learner.attempts.get(block, 0) + 1
            chance = 1 / (1 + math.exp(-(2.5 * (learner.ability - unit.difficulty) + 0.6 * (attempt - 1))))
            correct = rng.random() < chance
            score = unit.max_score if correct else rng.randrange(unit.max_score)
            facts = {"success": correct, "score": score, "max_score": unit.max_score, "attempt": attempt}
            self.emit("answered", block, facts)
            if correct:
                learner.solved.add(block)
                break
            if rng.random() > 0.35 + 0.5 * learner.engagement:
                break
            self.wait(20, 180)
        self.wait(5, 30)


class _Simulation:
    """The learners, the courses and the random state of one simulation."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.origin = datetime.combine(config.start, time(), UTC)
        self.courses = [build_course(i, config) for i in range(config.courses)]
        self.learners = [self.new_learner(n) for n in range(1, config.students + 1)]
        self.hours = list(range(24))

    def new_learner(self, n: int) -> Learner:
        """Learner ``n`` with random traits."""
        rng = self.rng
        return Learner(
            name=f"learner{n:03d}",
            user_id=1000 + n,
            engagement=rng.betavariate(2, 3),
            ability=rng.betavariate(4, 3) * 2 - 1,
            speed=rng.choice((1.0, 1.0, 1.0, 1.25, 1.5, 2.0)),
            shift=rng.choice((-1, 0, 0, 0, 1)),
        )

    def day(self, day: int) -> list[Activity]:
        """Every learner's sessions starting on ``day`` (0 = the start date)."""
        rng, courses = self.rng, self.courses
        if not courses:
            return []
        weekend = (self.config.start + timedelta(days=day)).weekday() >= 5
        out: list[Activity] = []
        for learner in self.learners:
            mean = (0.3 + 2.2 * learner.engagement) * 0.95**day * (0.75 if weekend else 1.0)
            count = max(_poisson(rng, mean), len(courses) if day == 0 else 0)
            hours = rng.choices(self.hours, HOUR_WEIGHTS, k=count)
            starts = sorted(day * DAY + ((h + learner.shift) % 24) * 3600 + rng.uniform(0, 3600) for h in hours)
            for n, start in enumerate(starts):
                enroll = day == 0 and n < len(courses)
                course = courses[n] if enroll else rng.choice(courses)
                session = _Session(self, learner, course, max(start, learner.free_at + rng.uniform(600, 3600)))
                learner.free_at = session.run(enroll)
                out.extend(session.out)
        return out


def simulate(config: Config | None = None) -> Iterator[Activity]:
    """The activities of a simulated run, in time order, within ``config.days`` days from ``config.start``.

    The same config gives the same records. A session running past the last midnight is cut there.
    """
    sim = _Simulation(config or Config())
    pending: list[Activity] = []
    for day in range(sim.config.days):
        pending.extend(sim.day(day))
        pending.sort(key=lambda a: a.timestamp)  # stable: ties keep their (deterministic) order
        cutoff = sim.origin + timedelta(days=day + 1)  # later days' sessions all start after this
        split = next((i for i, a in enumerate(pending) if a.timestamp >= cutoff), len(pending))
        yield from pending[:split]
        pending = pending[split:]
    # The log ends at the last midnight, as a log rotated then would: later activity is cut.


# Rendering --------------------------------------------------------------------------
def _iso(moment: datetime) -> str:
    """ISO 8601 with microseconds and ``+00:00``, as the Open edX tracking log writes times."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def to_openedx(activity: Activity) -> dict[str, Any]:
    """The Open edX tracking-log event of an activity (no ``id``: the framework derives one)."""
    a = activity
    event_type, source, event, path = _openedx_specifics(a)
    page = a.object if a.verb == "viewed" and source == "browser" else a.page if source == "browser" else None
    context: dict[str, Any] = {
        "course_id": a.course,
        "course_user_tags": {},
        "user_id": a.user_id,
        "org_id": a.course.removeprefix("course-v1:").split("+", 1)[0],
        "path": path,
    }
    if a.verb == "answered":
        context["module"] = {"display_name": "Problem", "usage_key": a.object}
    return {
        "name": event_type,
        "context": context,
        "username": a.agent,
        "session": a.session,
        "ip": f"10.{(a.user_id >> 8) & 255}.{a.user_id & 255}.{a.user_id % 250 + 1}",
        "agent": USER_AGENTS[a.user_id % len(USER_AGENTS)],
        "host": urlsplit(a.object).netloc or HOST if a.verb == "viewed" else HOST,
        "referer": a.page or "",
        "accept_language": "en-US,en;q=0.9",
        "event": _compact_json(event) if source == "browser" else event,
        "time": _iso(a.timestamp),
        "event_type": event_type,
        "event_source": source,
        "page": page,
    }


def _openedx_specifics(a: Activity) -> tuple[str, str, dict[str, Any], str]:
    """``event_type``, ``event_source``, the nested ``event`` and the request path of an activity."""
    if a.verb in VIDEO_EVENT_TYPES:
        event: dict[str, Any] = {"id": a.object, "code": "html5"}
        event.update({VIDEO_FIELDS[k]: v for k, v in a.result.items() if k in VIDEO_FIELDS})
        if a.verb == "seeked":
            event["type"] = "onSlideSeek"
        return VIDEO_EVENT_TYPES[a.verb], "browser", event, "/event"
    if a.verb == "answered":
        return (
            "problem_check",
            "server",
            _problem_check(a),
            f"/courses/{a.course}/xblock/{a.object}/handler/xmodule_handler/problem_check",
        )
    if a.verb == "enrolled":
        enrollment = {"course_id": a.object, "user_id": a.user_id, "mode": "audit"}
        return "edx.course.enrollment.activated", "server", enrollment, "/api/enrollment/v1/enrollment"
    url = urlsplit(a.object)
    if "/courseware/" not in url.path:  # a page view: the LMS logs the request path as the event type
        return url.path or "/", "server", {"GET": {}, "POST": {}}, url.path or "/"
    return _navigation(a, url.path)


def _navigation(a: Activity, path: str) -> tuple[str, str, dict[str, Any], str]:
    """A courseware navigation (browser) event: which one is picked from the activity id."""
    parts = path.rstrip("/").split("/")
    tab = int(parts[-1]) if parts[-1].isdigit() else 1
    sequential = parts[-2] if len(parts) > 1 else ""
    key = a.course.removeprefix("course-v1:")
    event = {
        "id": f"block-v1:{key}+type@sequential+block@{sequential}",
        "current_tab": max(1, tab - 1),
        "tab_count": 3,
        "target_tab": tab,
        "widget_placement": "top",
    }
    event_type = NAVIGATION_EVENT_TYPES[int(hashlib.md5(a.id.encode(), usedforsecurity=False).hexdigest()[:8], 16) % 3]
    return event_type, "browser", event, "/event"


def _problem_check(a: Activity) -> dict[str, Any]:
    """The server ``problem_check`` event: grade, max grade, attempts, success and the answers."""
    answer = f"{a.object.rsplit('@', 1)[-1]}_2_1"
    success = a.result.get("success")
    event: dict[str, Any] = {"problem_id": a.object}
    for key, name in (("score", "grade"), ("max_score", "max_grade"), ("attempt", "attempts")):
        if key in a.result:
            event[name] = a.result[key]
    if success is not None:
        event["success"] = "correct" if success else "incorrect"
        event["answers"] = {answer: "choice_1" if success else "choice_0"}
        event["correct_map"] = {answer: {"correctness": event["success"], "npoints": None, "hint": ""}}
    return event


def to_xapi(activity: Activity) -> dict[str, Any]:
    """The xAPI statement of an activity (its ``id`` is the activity's UUID)."""
    a = activity
    kind = _xapi_kind(a)
    statement: dict[str, Any] = {
        "id": a.id,
        "actor": {"objectType": "Agent", "account": {"homePage": BASE, "name": a.agent}},
        "verb": {"id": XAPI_VERBS.get(a.verb, ADL + a.verb), "display": {"en-US": a.verb}},
        "object": {
            "id": _xapi_object_id(a, kind),
            "objectType": "Activity",
            "definition": {"type": XAPI_TYPES[kind]},
        },
    }
    if kind == "problem":
        statement["object"]["definition"]["interactionType"] = "choice"
    result, extensions = _xapi_result(a, kind)
    if result:
        statement["result"] = result
    statement["context"] = {
        "platform": "Open edX",
        "language": "en-US",
        "contextActivities": {
            "parent": [
                {
                    "id": f"{BASE}/courses/{a.course}",
                    "objectType": "Activity",
                    "definition": {"type": XAPI_TYPES["course"]},
                }
            ]
        },
        "extensions": extensions,
    }
    statement["timestamp"] = _iso(a.timestamp).replace("+00:00", "Z")
    statement["version"] = "1.0.3"
    return statement


def _xapi_kind(a: Activity) -> str:
    """What the object is: page, video, problem or course."""
    if a.verb in VIDEO_EVENT_TYPES:
        return "video"
    return {"answered": "problem", "enrolled": "course"}.get(a.verb, "page")


def _xapi_object_id(a: Activity, kind: str) -> str:
    """The object IRI: an XBlock IRI for videos and problems, the course IRI, or the page URL."""
    if kind in ("video", "problem"):
        return f"{BASE}/xblock/{a.object}"
    return f"{BASE}/courses/{a.object}" if kind == "course" else a.object


def _xapi_result(a: Activity, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The statement's ``result`` and its context extensions."""
    facts = a.result
    if kind == "video":
        result_ext = {XAPI_RESULT_EXTENSIONS[k]: v for k, v in facts.items() if k in XAPI_RESULT_EXTENSIONS}
        result: dict[str, Any] = {"extensions": result_ext} if result_ext else {}
        if a.verb == "stopped":
            result["completion"] = True
        context_ext: dict[str, Any] = {SESSION_ID: a.session}
        if "duration" in facts:
            context_ext[LENGTH] = facts["duration"]
        return result, context_ext
    result = {}
    if "success" in facts:
        result["success"] = facts["success"]
    score = {k: facts[name] for k, name in (("raw", "score"), ("max", "max_score")) if name in facts}
    if score:
        if score.get("max"):
            score["scaled"] = round(score.get("raw", 0) / score["max"], 4)
        result["score"] = score
    if "attempt" in facts:
        result["extensions"] = {ATTEMPT: facts["attempt"]}
    return result, {}


# Files and the command line -----------------------------------------------------------
RENDERERS = {"openedx": to_openedx, "xapi": to_xapi}
FILE_NAMES = {"openedx": "tracking.log", "xapi": "xapi.jsonl"}


def write_jsonl(path: str | Path, events: Iterable[Mapping[str, Any]], gzip: bool = False) -> int:
    """Write events as JSON lines (gzip-compressed if ``gzip``); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with gzip_format.open(path, "wt", encoding="utf-8") if gzip else path.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(_compact_json(event) + "\n")
            count += 1
    return count


def generate_files(
    config: Config, out_dir: str | Path, formats: Iterable[str] = ("openedx", "xapi"), gzip: bool = False
) -> list[Path]:
    """Simulate ``config`` and write ``tracking.log`` (Open edX) and/or ``xapi.jsonl``; returns their paths.

    Paths come in the order of ``formats``; with ``gzip`` the files are compressed and
    named ``.gz``. Every file holds the same simulated activity, one event per activity,
    in time order.
    """
    formats = list(formats)
    unknown = [fmt for fmt in formats if fmt not in RENDERERS]
    if unknown:
        raise ValueError(f"unknown format {unknown[0]!r}; choose from {sorted(RENDERERS)}")
    paths = []
    for fmt in formats:
        path = Path(out_dir) / (FILE_NAMES[fmt] + (".gz" if gzip else ""))
        write_jsonl(path, map(RENDERERS[fmt], simulate(config)), gzip=gzip)
        paths.append(path)
    return paths


def count_lines(path: Path) -> int:
    """The number of lines of a (maybe gzipped) file."""
    with gzip_format.open(path, "rt") if path.suffix == ".gz" else path.open() as lines:
        return sum(1 for _ in lines)


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m tasks generate``."""
    defaults = Config()
    for name in ("courses", "students", "days", "seed"):
        parser.add_argument(
            f"--{name}", type=int, default=getattr(defaults, name), help=f"default {getattr(defaults, name)}"
        )
    parser.add_argument("--start", type=date.fromisoformat, default=defaults.start, help="first day, YYYY-MM-DD")
    parser.add_argument("--format", choices=["openedx", "xapi", "both"], default="both", help="default both")
    parser.add_argument("--out", type=Path, required=True, help="directory to write the files to")
    parser.add_argument("--gzip", action="store_true", help="compress the files (.gz)")


def generate_command(args: argparse.Namespace) -> int:
    """Write the files a ``generate`` command line asks for and print each with its event count."""
    formats = ("openedx", "xapi") if args.format == "both" else (args.format,)
    try:
        config = Config(courses=args.courses, students=args.students, days=args.days, seed=args.seed, start=args.start)
        paths = generate_files(config, args.out, formats, gzip=args.gzip)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for fmt, path in zip(formats, paths, strict=True):
        print(f"{path}  {count_lines(path)} events ({fmt})")
    return 0
