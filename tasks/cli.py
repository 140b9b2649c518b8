"""Command line: ``python -m tasks.cli run`` starts everything for one machine.

``run`` starts an embedded Redis and/or nx-27017 when ``REDIS_URL`` / ``MONGO_URL`` are
not configured, then the web app (gunicorn), one worker consuming every queue, and beat;
Ctrl-C (or SIGTERM) stops them all, servers last.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from types import FrameType

from config.settings import Settings
from tasks.embedded import EmbeddedMongo, EmbeddedRedis, die_with_parent

log = logging.getLogger("insights")


def embedded_urls(settings: Settings, stack: ExitStack) -> dict[str, str]:
    """Start the embedded servers that ``settings`` lacks; returns their URLs as settings fields."""
    urls = {}
    if not settings.redis_url:
        redis_server = stack.enter_context(EmbeddedRedis(settings.data_dir / "redis"))
        urls["redis_url"] = redis_server.url
        log.warning("REDIS_URL is not set: started the embedded Redis at %s", redis_server.url)
    if not settings.mongo_url:
        mongo_server = stack.enter_context(EmbeddedMongo(settings.data_dir / "mongo"))
        urls["mongo_url"] = mongo_server.url
        log.warning("MONGO_URL is not set: started the embedded nx-27017 at %s", mongo_server.url)
    return urls


def process_commands(settings: Settings) -> dict[str, list[str]]:
    """The web, worker and beat command lines for this machine."""
    python = sys.executable
    queues = ",".join(settings.queues.all())
    return {
        "web": [python, "-m", "gunicorn", "-w", "2", "-b", f"{settings.web_host}:{settings.web_port}", "web.wsgi:app"],
        "worker": [python, "-m", "celery", "-A", "tasks.worker", "worker", "-Q", queues, "-l", "INFO", "-c", "2"],
        "beat": [
            python, "-m", "celery", "-A", "tasks.worker", "beat", "-l", "INFO",
            "-s", str(settings.data_dir / "celerybeat-schedule"),
        ],
    }  # fmt: skip


def run(settings: Settings) -> int:
    """Run web, worker and beat (with embedded servers where needed) until one exits or we are stopped."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        urls = embedded_urls(settings, stack)
        env = dict(os.environ, **settings.with_urls(**urls).to_env())
        # Each child in its own session, so Ctrl-C reaches only us and we stop them in order.
        children = {
            name: subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=die_with_parent())
            for name, cmd in process_commands(settings).items()
        }
        log.warning("web on http://%s:%d/ ; Ctrl-C stops everything", settings.web_host, settings.web_port)
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
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
        if failed and not stopping:
            log.error("stopped because %s exited", ", ".join(failed))
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tasks.cli``."""
    parser = argparse.ArgumentParser(prog="insights", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start embedded servers (if needed), web, worker and beat")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "run":
        return run(Settings.from_env())
    return 2


if __name__ == "__main__":
    sys.exit(main())
