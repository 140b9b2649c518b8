"""Sampling profiles of running processes with py-spy, summarised as top functions."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")


def py_spy() -> str | None:
    """The py-spy executable (next to our Python, else on PATH), or None."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    """One ``py-spy record`` attached to a process (and its subprocesses) until ``stop``."""

    name: str
    pid: int
    output: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.output.with_suffix(".log")

    def start(self, executable: str, rate: int = 200) -> Recording:
        """Attach py-spy (non-blocking sampling, so the target is not paused)."""
        args = [executable, "record", "--pid", str(self.pid), "--subprocesses", "--nonblocking",
                "--rate", str(rate), "--format", "raw", "--nolineno", "--output", str(self.output)]  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        """Stop sampling (SIGINT makes py-spy write its output)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def summary(self, top: int = 12) -> Profile:
        """Self and inclusive sample counts per function from the collapsed stacks."""
        return Profile.from_collapsed(self.name, self.output, top)


PROJECT = ("tasks/", "web/", "config/", "bench/")
REDIS_IO = ("send_packed_command", "_read_from_socket", "sendall", "recv")
LIBRARIES = ("celery/", "kombu/", "billiard/")


@dataclass
class Profile:
    """Top functions of one process: by self samples, by inclusive samples of our own code
    (tasks/, web/, config/), and socket I/O by the nearest caller that is ours or Celery's."""

    name: str
    samples: int
    self_top: list[tuple[str, int]]
    inclusive_top: list[tuple[str, int]]
    io_callers: list[tuple[str, int]]

    @classmethod
    def from_collapsed(cls, name: str, path: Path, top: int) -> Profile:
        """Parse py-spy's raw (collapsed) output: ``frame;frame;... count`` per line."""
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        io: Counter[str] = Counter()
        total = 0
        text = path.read_text(errors="replace") if path.exists() else ""
        for line in text.splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_short(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                if _file(frame).startswith(PROJECT):
                    inclusive[frame] += count
            if any(word in frames[-1] for word in REDIS_IO):
                io[_nearest_caller(frames)] += count
        return cls(name, total, own.most_common(top), inclusive.most_common(top), io.most_common(top // 2))


def _short(frame: str) -> str:
    """A frame as py-spy names it: ``func (package/module.py)``."""
    return frame.strip()


def _file(frame: str) -> str:
    match = FRAME.match(frame)
    return match["file"] if match else ""


def _nearest_caller(frames: list[str]) -> str:
    """The innermost frame of ours or of Celery/kombu/billiard (what asked for the I/O)."""
    for frame in reversed(frames):
        if _file(frame).startswith(PROJECT + LIBRARIES):
            return frame
    return frames[-1]
