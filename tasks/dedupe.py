"""Idempotency: which handlers have not yet been given an event, by event id.

One Redis key per event id holds the fingerprints of the handlers it was dispatched to;
claiming is one atomic script per batch, so two batchers never dispatch the same event to
the same handler. Keys expire after the dedupe window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import redis

KEY_PREFIX = "insights:seen:"

# KEYS: one per event; ARGV[1]: ttl seconds; ARGV[2..]: ",<fingerprint>," per handler.
# Returns, per event, the concatenated fingerprints it is new for (empty: duplicate).
_CLAIM = """
local ttl = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local seen = redis.call('GET', key) or ''
  local new = ''
  for j = 2, #ARGV do
    if not string.find(seen, ARGV[j], 1, true) then new = new .. ARGV[j] end
  end
  if new ~= '' then redis.call('SET', key, seen .. new, 'EX', ttl) end
  out[i] = new
end
return out
"""


def fingerprint(handler: str) -> str:
    """A short stable token for a handler task name, as stored in the dedupe keys."""
    return "," + hashlib.sha1(handler.encode()).hexdigest()[:10] + ","


class Deduper:
    """Claims (event, handler) pairs so that each is dispatched once within the window."""

    def __init__(self, client: redis.Redis, window: int) -> None:
        self._client = client
        self._window = window
        self._claim = client.register_script(_CLAIM)

    def claim(self, event_ids: Sequence[str], handlers: Sequence[str]) -> list[list[str]]:
        """For each event id, the handlers it had not been claimed for (now claimed)."""
        if not event_ids or not handlers:
            return [[] for _ in event_ids]
        prints = {fingerprint(h): h for h in handlers}
        keys = [KEY_PREFIX + event_id for event_id in event_ids]
        answers = self._claim(keys=keys, args=[self._window, *prints])
        return [_handlers_in(answer, prints) for answer in answers]


def _handlers_in(answer: bytes | str, prints: dict[str, str]) -> list[str]:
    text = answer.decode() if isinstance(answer, bytes) else answer
    if not text:
        return []
    if len(text) == sum(len(p) for p in prints):
        return list(prints.values())
    return [handler for token, handler in prints.items() if token in text]
