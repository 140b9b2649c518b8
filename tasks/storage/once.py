"""Single jobs: run a job once per period cluster-wide, however many hosts or beats invoke it."""

from __future__ import annotations

import logging
import time

import redis

from tasks.storage.keys import Keys
from tasks.storage.lease import holder_id

log = logging.getLogger(__name__)


def once_per_period(client: redis.Redis, keys: Keys, job: str, period: float, now: float | None = None) -> bool:
    """Claim ``job``'s run for the current period (periods of ``period`` seconds counted from the
    epoch): True for the first caller cluster-wide, False for every other in the same period."""
    number = int((time.time() if now is None else now) // period)
    claimed = bool(client.set(keys.once(job, number), holder_id(), nx=True, px=max(1, int(2 * period * 1000))))
    if not claimed:
        log.info("%s already ran in this %g s period elsewhere; skipped", job, period)
    return claimed
