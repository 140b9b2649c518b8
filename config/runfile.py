"""``run.json``: the URLs a running ``python -m tasks run`` uses, for the other commands to find.

``run`` records its Redis, MongoDB, broker and web URLs (embedded servers included) in
``$INSIGHTS_DATA_DIR/run.json`` and removes the file when it stops cleanly. The other commands
read it when no URL is configured in the environment (configured URLs always win); a file
whose process is gone is stale and ignored (with a note), though the next ``run`` reuses its
ports when they are free. The file holds nothing secret beyond what the URLs hold; it is
written atomically with mode 0600.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

RUN_FILE = "run.json"
# The fields of Settings that run.json may fill in (web_url is recorded for people, not read back).
URL_FIELDS = ("redis_url", "mongo_url", "broker_url")


@dataclass(frozen=True)
class RunRecord:
    """What one ``run`` recorded: its process id, its URLs by name, and whether that process lives."""

    path: Path
    pid: int
    urls: dict[str, str]
    alive: bool


def run_file_path(data_dir: Path) -> Path:
    """Where ``run`` records its URLs under the data dir."""
    return Path(data_dir) / RUN_FILE


def write_run_file(data_dir: Path, urls: dict[str, str], pid: int | None = None) -> Path:
    """Record ``urls`` (e.g. ``redis_url``, ``mongo_url``, ``broker_url``, ``web_url``) of process ``pid``
    (default: this one) atomically, readable by the owner only; returns the file's path."""
    path = run_file_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"pid": os.getpid() if pid is None else pid, "urls": urls}, indent=2, sort_keys=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(body + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def remove_run_file(data_dir: Path, pid: int | None = None) -> None:
    """Remove the run file if process ``pid`` (default: this one) wrote it; another run's is left alone."""
    record = read_run_file(data_dir)
    if record is not None and record.pid == (os.getpid() if pid is None else pid):
        record.path.unlink(missing_ok=True)


def read_run_file(data_dir: Path) -> RunRecord | None:
    """The run file's record, alive or stale; None when there is none. ``ValueError`` if it is unreadable."""
    path = run_file_path(data_dir)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} could not be read ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("pid"), int) or not isinstance(raw.get("urls"), dict):
        raise ValueError(f"{path} could not be read (expected {{'pid': int, 'urls': {{...}}}})")
    urls = {str(name): str(url) for name, url in raw["urls"].items() if url}
    return RunRecord(path, raw["pid"], urls, _alive(raw["pid"]))


def recorded_urls(data_dir: Path) -> tuple[dict[str, str], str | None]:
    """The URLs a running ``run`` recorded under ``data_dir``, and a note for the operator (or None).

    No file: no URLs. A file whose process is not running, or that cannot be read: no URLs and a
    note saying so."""
    try:
        record = read_run_file(data_dir)
    except ValueError as exc:
        return {}, f"ignored: {exc}"
    if record is None:
        return {}, None
    if not record.alive:
        return {}, f"ignored {record.path}: the run that wrote it (pid {record.pid}) is not running any more"
    return record.urls, None


def no_server_message(what: str, variable: str, data_dir: Path) -> str:
    """The error when neither the environment nor a running ``run`` gives ``what`` (e.g. ``Redis``)."""
    return (
        f"no {what} configured: set {variable}, or start `bin/insights run` "
        f"(it records its servers in {run_file_path(data_dir)})"
    )


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
