"""Single jobs: run a job once per period cluster-wide, however many hosts or beats invoke it.

A run claims its period in Redis (``once:<job>:<period>``) before it starts; a run that fails gives
the claim back (if it is still its own), so the next invocation in the same period tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from tasks.storage.keys import Keys
from tasks.storage.lease import holder_id

log = logging.getLogger(__name__)

T = TypeVar("T")

# Delete the claim only if it still holds this run's value (it may have expired and been taken since).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _period(period: float, now: float | None) -> int:
    return int((time.time() if now is None else now) // period)


def claim_period(client: redis.Redis, keys: Keys, job: str, period: float, now: float | None = None) -> str | None:
    """Claim ``job``'s run for the current period (periods of ``period`` seconds counted from the
    epoch): the claim's value for the first caller cluster-wide, None for every other in the period."""
    owner = holder_id()
    key = keys.once(job, _period(period, now))
    if client.set(key, owner, nx=True, px=max(1, int(2 * period * 1000))):
        return owner
    log.info("%s already ran in this %g s period elsewhere; skipped", job, period)
    return None


def release_period(
    client: redis.Redis, keys: Keys, job: str, period: float, owner: str, now: float | None = None
) -> None:
    """Give back the claim ``owner`` made on ``job``'s period (nothing if the claim is not, or no longer, its own)."""
    client.eval(_RELEASE, 1, keys.once(job, _period(period, now)), owner)


def once_per_period(client: redis.Redis, keys: Keys, job: str, period: float, now: float | None = None) -> bool:
    """Claim ``job``'s run for the current period: True for the first caller cluster-wide, False for
    every other in the same period. The claim is kept whatever happens next: a job that may fail
    should use :func:`run_once_per_period`."""
    return claim_period(client, keys, job, period, now) is not None


def run_once_per_period(
    client: redis.Redis,
    keys: Keys,
    job: str,
    period: float,
    run: Callable[[], T],
    skipped: T,
    now: float | None = None,
) -> T:
    """Run ``run`` if this is the first claim of ``job``'s current period cluster-wide (else return
    ``skipped``); if ``run`` raises, the period is given back, so a later invocation in it runs the job."""
    at = time.time() if now is None else now
    owner = claim_period(client, keys, job, period, at)
    if owner is None:
        return skipped
    try:
        return run()
    except BaseException:
        release_period(client, keys, job, period, owner, at)
        raise
