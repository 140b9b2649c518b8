"""The per-id dedupe layout before time buckets (commit 5497a44, tasks/pipeline/dedupe.py), kept as the
baseline ``bench.dedupe`` measures the current layout against: one Redis key per event id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

import redis

from tasks.storage.keys import Keys
from tasks.storage.replies import text

# KEYS: one per event; ARGV[1]: ttl seconds; ARGV[2]: h, the number of handlers;
# ARGV[3 .. 2+h]: ",<fingerprint>," per handler; ARGV[3+h]: the events' fingerprints, all of
# ARGV[4+h] characters, concatenated (one argument rather than one per event: faster).
# A key holds "<event fingerprint>,<handler>,,<handler>,..." (keys written before
# fingerprints were kept start with "," and take the first fingerprint they meet).
# Returns, per event, the concatenated handler fingerprints it is new for (empty: a
# duplicate), or "!" and the recorded event fingerprint when the event differs (a conflict).
_CLAIM = """
local ttl = tonumber(ARGV[1])
local h = tonumber(ARGV[2])
local all = table.concat(ARGV, '', 3, 2 + h)
local prints = ARGV[3 + h]
local n = tonumber(ARGV[4 + h])
local out = {}
for i, key in ipairs(KEYS) do
  local fp = string.sub(prints, (i - 1) * n + 1, i * n)
  local seen = redis.call('GET', key)
  if not seen then
    redis.call('SET', key, fp .. all, 'EX', ttl)
    out[i] = all
  elseif seen == fp .. all then
    out[i] = ''
  else
    local legacy = string.byte(seen) == 44
    if not legacy and string.sub(seen, 1, #fp) ~= fp then
      out[i] = '!' .. string.sub(seen, 1, (string.find(seen, ',', 1, true) or #seen + 1) - 1)
    else
      local new = ''
      for j = 3, 2 + h do
        if not string.find(seen, ARGV[j], 1, true) then new = new .. ARGV[j] end
      end
      if new ~= '' then
        if not legacy then seen = string.sub(seen, #fp + 1) end
        redis.call('SET', key, fp .. seen .. new, 'EX', ttl)
      end
      out[i] = new
    end
  end
end
return out
"""


class Claim(NamedTuple):
    """What claiming one event gave: the handlers it is new for, or the conflict."""

    handlers: tuple[str, ...]
    #: The fingerprint on record when this event differs from it (a conflict; nothing claimed), else None.
    known: str | None = None


NOTHING = Claim(())  # a duplicate: new for no handler


def fingerprint(handler: str) -> str:
    """A short stable token for a handler task name, as stored in the dedupe keys."""
    return "," + hashlib.sha1(handler.encode()).hexdigest()[:10] + ","


class Deduper:
    """Claims (event, handler) pairs so that each is dispatched once within the window."""

    def __init__(self, client: redis.Redis, window: int, keys: Keys) -> None:
        self._client = client
        self._window = window
        self._keys = keys
        self._claim = client.register_script(_CLAIM)

    def claim(self, event_ids: Sequence[str], prints: Sequence[str], handlers: Sequence[str]) -> list[Claim]:
        """For each event id (with its event's fingerprint), the handlers it had not been claimed for (now claimed).

        One Redis call for the whole sequence.
        """
        if not event_ids or not handlers:
            return [NOTHING] * len(event_ids)
        tokens = {fingerprint(h): h for h in handlers}
        keys = [self._keys.seen(event_id) for event_id in event_ids]
        width = len(prints[0])
        if any(len(p) != width for p in prints):
            raise ValueError("event fingerprints must all have the same length")
        answers = self._claim(keys=keys, args=[self._window, len(tokens), *tokens, "".join(prints), width])
        every = "".join(tokens).encode()
        everything = Claim(tuple(tokens.values()))
        return [everything if a == every else _claim_of(a, tokens) if a else NOTHING for a in answers]


def _claim_of(answer: bytes | str, tokens: dict[str, str]) -> Claim:
    """A conflict, or the claim for some of the handlers (the common cases are handled by ``claim``)."""
    answered = text(answer)
    if answered.startswith("!"):
        return Claim((), answered[1:])
    return Claim(tuple(handler for token, handler in tokens.items() if token in answered))
