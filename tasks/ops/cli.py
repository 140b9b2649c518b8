"""Command line: ``python -m tasks run|batcher|deadletters|conflicts|recompute|replay|tokens|generate|fs-migrate``.

``run`` starts an embedded Redis and/or nx-27017 when ``REDIS_URL`` / ``MONGO_URL`` are
not configured, then the web app (gunicorn), the batcher, one worker consuming every
queue, one single-process worker for the shard queues, and beat; Ctrl-C (or SIGTERM)
stops them all, servers last.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import urlsplit

from config.processes import Commands
from config.queues import shard_queues
from config.runfile import no_server_message, recorded_urls, remove_run_file, write_run_file
from config.settings import ConfigError, Settings
from tasks.app import Insights, create_insights
from tasks.errors import ArgumentError, InsightsError
from tasks.ops.embedded import EmbeddedMongo, EmbeddedRedis, die_with_parent, port_if_free
from tasks.pipeline.batcher import Batcher
from tasks.pipeline.conflicts import Conflicts
from tasks.pipeline.dead_letters import retry_dead_letters
from tasks.storage.connections import redis_of
from tasks.storage.keys import Keys

PROGRAM = "insights"  # how the last line of a failed run names us
LETTER_ID = re.compile(r"\d+-\d+")  # a Redis stream entry id

log = logging.getLogger("insights")
PORTS_FILE = "ports.json"  # under INSIGHTS_DATA_DIR: the embedded servers' ports, kept across restarts


def embedded_urls(settings: Settings, stack: ExitStack) -> dict[str, str]:
    """Start the embedded servers that ``settings`` lacks; returns their URLs as settings fields.

    Each takes the port it had in the last run (``ports.json``) when that port is free.
    """
    urls = {}
    ports = _recorded_ports(settings.data_dir)
    if not settings.redis_url:
        redis_server = stack.enter_context(
            EmbeddedRedis(settings.data_dir / "redis", port=ports.get("redis_url"), maxmemory=settings.redis_maxmemory)
        )
        urls["redis_url"] = redis_server.url
        log.warning("REDIS_URL is not set: started the embedded Redis at %s", redis_server.url)
    if not settings.mongo_url:
        mongo_server = stack.enter_context(EmbeddedMongo(settings.data_dir / "mongo", port=ports.get("mongo_url")))
        urls["mongo_url"] = mongo_server.url
        log.warning("MONGO_URL is not set: started the embedded nx-27017 at %s", mongo_server.url)
    if urls:  # for the next start: the same ports, when they are free (clients keep their URLs)
        taken = {name: urlsplit(url).port for name, url in urls.items()}
        (settings.data_dir / PORTS_FILE).write_text(json.dumps(taken) + "\n")
    return urls


def _recorded_ports(data_dir: Path) -> dict[str, int]:
    """The ports the embedded servers had in the last ``run`` (``ports.json``) that are free now, by URL name."""
    path = data_dir / PORTS_FILE
    try:
        recorded = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s could not be read (%s); the embedded servers take new ports", path, exc)
        return {}
    if not isinstance(recorded, dict):
        return {}
    return {
        name: port
        for name, port in recorded.items()
        if isinstance(port, int) and 0 < port < 65536 and port_if_free(port) is not None
    }


def command_settings(command: str) -> Settings:
    """The settings of ``command``: the environment's, with what it leaves unset taken from the URLs a
    running ``run`` recorded (config/runfile.py); ``ConfigError`` when no Redis is found either way."""
    settings = Settings.from_env()
    if command == "run" or (settings.redis_url and settings.mongo_url):
        return settings
    urls, note = recorded_urls(settings.data_dir)
    if note:
        print(f"note: {note}", file=sys.stderr)
    settings = settings.with_recorded_urls(urls)
    if not settings.redis_url:
        raise ConfigError(no_server_message("Redis", "REDIS_URL", settings.data_dir))
    return settings


def process_commands(settings: Settings, commands: Commands | None = None) -> dict[str, list[str]]:
    """The web, batcher, worker and beat command lines for this machine (config/processes.py)."""
    commands = commands or Commands()
    return {
        # Threads, so a slow or half-sent request holds one thread, not a whole worker.
        "web": commands.web(f"{settings.web_host}:{settings.web_port}", workers=2, threads=settings.web_threads),
        "batcher": commands.batcher(),
        "worker": commands.worker(settings.queues.all(), concurrency=2, name="main@%h"),
        # One single-process consumer for every shard queue keeps per-user/per-resource order; on
        # several hosts, one holds each shard queue's lease and the others stand by (shard_leases.py).
        "shards": commands.shard_worker(shard_queues(settings.queues, settings.shards), name="shards@%h"),
        # RedBeat keeps the schedule and a single-beat lock in Redis (config/celery.py): no -s file.
        "beat": commands.beat(),
    }


def run(settings: Settings, demo: bool = False) -> int:
    """Run web, worker and beat (with embedded servers where needed) until one exits or we are stopped.

    With ``demo``, once the web app answers, a generated week of a course is sent through
    the pipeline and the dashboard URL showing it is logged.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        urls = embedded_urls(settings, stack)
        running = settings.with_urls(**urls)
        env = dict(os.environ, **running.to_env())
        base_url = f"http://{settings.web_host}:{settings.web_port}"
        # Each child in its own session, so Ctrl-C reaches only us and we stop them in order.
        children = {
            name: subprocess.Popen(
                cmd, env=env, start_new_session=True, preexec_fn=die_with_parent(), stderr=subprocess.PIPE
            )
            for name, cmd in process_commands(settings).items()
        }
        relays = {name: StartupErrors.relay(child) for name, child in children.items()}
        log.warning("web on %s/ ; Ctrl-C stops everything", base_url)
        if demo:
            threading.Thread(target=_load_demo, args=(base_url, settings.data_dir / "demo"), daemon=True).start()
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # Recorded once a Ctrl-C stops us in order, for the other commands to find (config/runfile.py).
        recorded = {"redis_url": running.redis, "mongo_url": running.mongo, "broker_url": running.broker}
        path = write_run_file(settings.data_dir, dict(recorded, web_url=base_url))
        stack.callback(remove_run_file, settings.data_dir)  # before the servers stop
        log.warning("recorded the servers in %s for the other commands", path)
        while not stopping and all(child.poll() is None for child in children.values()):
            time.sleep(0.2)
        failed = [name for name, child in children.items() if child.poll() not in (None, 0)]
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        for child in children.values():
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        for relay in relays.values():
            relay.finish()
        if failed and not stopping:
            log.error("stopped because %s exited", ", ".join(failed))
            # The error of a child that exited, else of any (a child may exit on its siblings' error).
            candidates = [*failed, *children]
            cause = next((relays[name].last for name in candidates if relays[name].last), None)
            if cause:  # last and alone: not line 10 of hundreds of lines of tracebacks
                print(f"{PROGRAM}: {cause}", file=sys.stderr, flush=True)
            return 1
    return 0


def _error_names() -> frozenset[str]:
    """The class names of the errors that stop a process at start-up with a message for the operator."""
    found, todo = {ConfigError.__name__}, [InsightsError]
    while todo:
        kind = todo.pop()
        found.add(kind.__name__)
        todo.extend(kind.__subclasses__())
    return frozenset(found)


class StartupErrors:
    """Relays a child's stderr to ours line by line, remembering the message of the last
    framework error in it: a traceback's last line (``tasks.errors.DuplicateName: …``), or
    what ``python -m tasks`` prints of one (``error: …``, see ``main``)."""

    LINE = re.compile(rb"^(?:[\w.]+\.)?(?P<name>\w+): (?P<message>.+?)\s*$")

    def __init__(self, stream: IO[bytes]) -> None:
        self.last: str | None = None
        self._names = _error_names()
        self._thread = threading.Thread(target=self._relay, args=(stream,), daemon=True)
        self._thread.start()

    @classmethod
    def relay(cls, child: subprocess.Popen[bytes]) -> StartupErrors:
        """Start relaying ``child``'s stderr (opened with ``stderr=PIPE``)."""
        assert child.stderr is not None
        return cls(child.stderr)

    def _relay(self, stream: IO[bytes]) -> None:
        sink = sys.stderr.buffer
        for line in iter(stream.readline, b""):
            sink.write(line)
            sink.flush()
            match = self.LINE.match(line)
            name = match["name"].decode(errors="replace") if match else ""
            if match and (name in self._names or name == "error"):
                self.last = match["message"].decode(errors="replace")
        stream.close()

    def finish(self, timeout: float = 5.0) -> None:
        """Wait for the relay to reach the end of the child's output (its own children may hold it open)."""
        self._thread.join(timeout)


def _load_demo(base_url: str, folder: Path) -> None:
    from tasks.ops.demo import load_demo

    try:
        load_demo(base_url, folder)
    except Exception:
        log.exception("the demo data could not be loaded")


def batcher(settings: Settings) -> int:
    """Run the batcher until SIGTERM/SIGINT, then flush what it holds."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    Batcher(create_insights(settings)).run(stop)
    return 0


def dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    """List dead letters, show one whole, or dispatch them again once the handler is fixed."""
    app = create_insights(settings)
    if args.action == "show":
        return show_dead_letters(app, args.ids)
    handler = app.resolve_handlers([args.handler])[0] if args.handler else None
    if args.action == "list":
        letters = list(app.dead_letters.list(handler))  # a bounded stream (INSIGHTS_DEADLETTER_MAX)
        for letter in letters:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(letter["time"]))
            print(f"{letter['id']}  {when}  {letter['handler']}  {len(letter['events'])} event(s)  {letter['error']}")
        if letters:  # on stderr: stdout stays one line per letter, for scripts
            print("deadletters show ID for the traceback and the events", file=sys.stderr)
        return 0
    done = retry_dead_letters(app.dead_letters, app.dispatcher, handler, args.ids)
    print(
        f"dispatched {len(done.letters)} letter(s) again as {len(done.batches)} batch(es): "
        f"{' '.join(done.batches) or '-'} (a letter another retry took at the same time is sent by that one only)"
    )
    return 0


def show_dead_letters(app: Insights, letter_ids: list[str]) -> int:
    """Print dead letters whole: handler, batch, time, error, the full traceback, the events as JSON."""
    if not letter_ids:
        raise ArgumentError("deadletters show needs the id of a letter (the first column of deadletters list)")
    for letter_id in letter_ids:
        if not LETTER_ID.fullmatch(letter_id):
            raise ArgumentError(f"{letter_id!r} is not a dead letter id (like 1700000000000-0: see deadletters list)")
        letter = app.dead_letters.get(letter_id)
        if letter is None:
            raise ArgumentError(f"no dead letter {letter_id!r} (retried, trimmed, or never kept: see deadletters list)")
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(letter["time"]))
        print(f"dead letter {letter['id']}")
        print(f"handler:   {letter['handler']}")
        print(f"batch:     {letter['batch']}")
        print(f"time:      {when}")
        print(f"error:     {letter['error']}")
        print(f"traceback:\n{letter['traceback'].rstrip()}")
        print(f"events ({len(letter['events'])}, each [id, received, raw]):")
        print(json.dumps(letter["events"], indent=2))
    return 0


def conflicts_command(settings: Settings, args: argparse.Namespace) -> int:
    """List events refused as conflicts: a different event under an id already on record."""
    with redis_of(settings) as client:
        for c in Conflicts(client, settings.conflicts_max, Keys(settings.redis_prefix)).list(args.sender):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c["time"]))
            if c["truncated"]:
                event = f"{c['event_json']}… (cut: the first {len(c['event_json'].encode())} of {c['size']} bytes)"
            else:
                event = json.dumps(c["event"], sort_keys=True)
            print(
                f"{c['entry']}  {when}  sender {c['sender'] or '-'}  id {c['id']}  "
                f"on record {c['known']}, this {c['fingerprint']}  receipt {c['receipt']}  {event}"
            )
    return 0


def recompute_command(settings: Settings, args: argparse.Namespace) -> int:
    """Refresh a memoized query over the Cartesian product of the ``--set`` values; 1 if any failed."""
    from tasks.ops.recompute import parameter_space, recompute  # only this command needs tqdm

    values: dict[str, list[str]] = {}
    for item in args.set:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ArgumentError(f"--set takes NAME=V1,V2 or NAME=@FILE, got {item!r}")
        if raw.startswith("@"):
            values[name] = [line.strip() for line in Path(raw[1:]).read_text().splitlines() if line.strip()]
        else:
            values[name] = [v for v in raw.split(",") if v]
    total = 1
    for options in values.values():
        total *= len(options)
    app = create_insights(settings)
    report = recompute(
        app, args.query, parameter_space(values), args.concurrency, progress=not args.no_progress, total=total
    )
    print(report.summary())
    return 1 if report.failures else 0


def fs_migrate_command(settings: Settings, args: argparse.Namespace) -> int:
    """Move local module file stores into GridFS (tasks/ops/fs_migrate.py); 1 if a file was refused."""
    from tasks.ops.fs_migrate import migrate_files
    from tasks.storage.services import Services

    services = Services(settings)
    try:
        source = Path(args.source) if args.source else None
        if source is not None and not source.is_dir():
            raise ArgumentError(f"--from {args.source}: no such folder (it holds one folder per module)")
        migration = migrate_files(services, source, args.module or None, remove=args.remove)
    finally:
        services.close()
    for label in migration.moved:
        print(f"moved {label}")
    print(migration.summary())
    return 1 if migration.refused else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tasks``."""
    parser = argparse.ArgumentParser(prog="insights", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("run", help="start embedded servers (if needed), web, batcher, workers and beat")
    start.add_argument("--demo", action="store_true", help="also load a generated week of a course")
    commands.add_parser("batcher", help="turn the intake stream into dispatched batches")
    letters = commands.add_parser("deadletters", help="list or retry events handlers failed on")
    letters.add_argument("action", choices=["list", "show", "retry"])
    letters.add_argument("--handler", help="only this handler (task name, module.function or function)")
    letters.add_argument("ids", nargs="*", help="the dead letters to show; only these (retry)")
    conflicting = commands.add_parser(
        "conflicts", help="list events that differ from the event on record under their id"
    )
    conflicting.add_argument("action", choices=["list"])
    conflicting.add_argument("--sender", help="only events posted with this API token (its name)")
    again = commands.add_parser("recompute", help="refresh a memoized query over a parameter space")
    again.add_argument("query", help="name of a memoized query")
    again.add_argument(
        "--set", action="append", default=[], metavar="NAME=V1,V2|NAME=@FILE", help="values of one parameter"
    )
    again.add_argument("--concurrency", type=int, default=8, help="tasks running at once (default 8)")
    again.add_argument("--no-progress", action="store_true", help="no progress bar")
    migrate = commands.add_parser("fs-migrate", help="move local module file stores into GridFS (idempotent)")
    migrate.add_argument("--from", dest="source", metavar="DIR", help="the local stores (default INSIGHTS_FS_ROOT)")
    migrate.add_argument("--module", action="append", help="only this module (repeatable)")
    migrate.add_argument("--remove", action="store_true", help="delete each local file once it is in GridFS")
    commands.add_parser("replay", help="feed the event log or tracking-log files through the pipeline", add_help=False)
    commands.add_parser("tokens", help="create, revoke or list API tokens (tasks/ops/tokens.py)", add_help=False)
    # generate: synthetic Open edX / xAPI event files (tasks/synthetic.py) ------------------
    from tasks.synthetic import add_generate_arguments, generate_command

    add_generate_arguments(commands.add_parser("generate", help="write synthetic tracking.log / xapi.jsonl files"))
    # ----------------------------------------------------------------------------------------
    args, rest = parser.parse_known_args(argv)
    if args.command == "generate" and not rest:
        return generate_command(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if rest and args.command not in ("replay", "tokens"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command in ("replay", "tokens") and {"-h", "--help"} & set(rest):
            settings = Settings()  # their help needs no configuration
        else:
            settings = command_settings(args.command)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "replay":
        from tasks.pipeline.replay import replay_main  # only this command needs tqdm

        # The application (its modules) only once the arguments name handlers.
        return replay_main(
            rest, settings, resolve_handlers=lambda names: create_insights(settings).resolve_handlers(names)
        )
    if args.command == "tokens":
        from tasks.ops.tokens import tokens_main

        return tokens_main(rest, settings)
    try:
        if args.command == "run":
            return run(settings, demo=args.demo)
        if args.command == "batcher":
            return batcher(settings)
        if args.command == "recompute":
            return recompute_command(settings, args)
        if args.command == "conflicts":
            return conflicts_command(settings, args)
        if args.command == "fs-migrate":
            return fs_migrate_command(settings, args)
        return dead_letters(settings, args)
    except (InsightsError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
