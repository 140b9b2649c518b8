"""Idempotency: which handlers have not yet been given an event, by event id.

Per event id Redis keeps a record — the event's fingerprint and the set of handlers it was
dispatched to — for at least the dedupe window. Claiming is one atomic script per batch
chunk, so two batchers never dispatch the same event to the same handler. An event whose
fingerprint differs from the one on record is a conflict: nothing is claimed for it and the
recorded fingerprint is returned.

Records are compact, because at scale they are most of what Redis holds (docs/scaling.md):

- **Time buckets.** Time is cut into buckets of ``window / BUCKETS`` seconds; a record goes
  into the bucket of the time it was written (Redis' clock), and every key of a bucket
  expires as a whole ``window`` after the bucket ends. A claim looks in every bucket that
  may hold a record younger than the window, newest first, so an id is remembered for
  between ``window`` and ``window + window / BUCKETS`` seconds. A record that gains
  handlers is written again into the current bucket (its newer copy wins). ``BUCKETS`` is 4:
  a new event costs a lookup per bucket (an HGET that scans a packed shard), and with 8
  buckets claims of new events took 28 µs of Redis CPU each, with 4, 17 (``bench.dedupe``,
  a whole window of buckets present; one key per id took 6.7), for records kept up to
  1.25 windows instead of 1.125: 11% more memory.
- **Small hashes.** A bucket is split into shards by the id's digest, each a Redis hash of
  at most about a hundred records, which Redis stores as one packed list (listpack/ziplist,
  ``hash-max-listpack-entries`` 128 by default) instead of an entry per record. A record is
  a field of 8 bytes (digest of the id; 4 more digest bytes pick the shard) and a value of
  the fingerprint's 8 bytes and a 2-byte handler-set number: about 22 bytes, plus a share
  of the shard key's ~100 bytes. The number of shards adapts to the rate: a bucket starts
  with as many as the previous one filled (``FILL`` records each), and adds a level of 4x as
  many when its newest level fills up (``SPLIT_AT`` each); a claim looks in every level.
- **Handler sets** are numbered once per deployment (``Keys.dedupe_handler_sets``, a hash
  with an entry per distinct set of handlers ever claimed together).

Two different ids collide only if 64 digest bits and the shard agree: at 10,000 events/s
and a one-day window, about one chance in 10^7 per day that one event is taken for another.
Records written before this layout (``Keys.seen``, one key per id, kept for the window of
the time: a week by default) are read on a miss, in one MGET per claim, until
``LEGACY_HORIZON`` (or the window, if longer) after this layout's first claim on the Redis
(``Keys.dedupe_legacy_until``); after that a claim passes no key per event and reads none.

Lua formats a number as text about as slowly as it makes a ``redis.call``, so the claim
script builds key names once per call for each bucket level and each shard, never per lookup.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from string import Template
from typing import NamedTuple

import redis

from tasks.storage.keys import Keys
from tasks.storage.replies import text

log = logging.getLogger(__name__)

BUCKETS = 4  # buckets per window: a claim looks in up to BUCKETS + 1; records live up to 1 + 1/BUCKETS windows
MIN_SHARDS = 256  # shards of a bucket's first level
FILL = 64  # records per shard a bucket's first level is sized for (from the previous bucket's count)
SPLIT_AT = 96  # records per shard (on average) at which a bucket adds a level of GROWTH times as many shards
GROWTH = 4
SHARD_BYTES = 4  # digest bytes that pick the shard
FIELD_BYTES = 8  # digest bytes stored as the record's field
LEGACY_HORIZON = 7 * 24 * 3600  # per-id records are read this long after the first claim (their default window)

# ARGV[1] window seconds; [2] bucket seconds; [3] now (seconds; "" for Redis' clock); [4] key
# prefix (Keys.dedupe_prefix); [5] the id digests, SHARD_BYTES + FIELD_BYTES each, concatenated;
# [6] the fingerprints (raw bytes), all of ARGV[7] bytes, concatenated; [8] seconds records of
# the per-id layout are read after the first claim; [9] h, the number of handler tokens;
# [10 .. 9+h] the tokens (",<hex>,", all of one width), sorted.
# KEYS: the records written before this layout, one per event (Keys.seen), read on a miss while
# Keys.dedupe_legacy_until is in the future (none passed: none read).
# Returns, per event, the concatenated tokens it is new for ("": a duplicate), or "!" and the
# recorded fingerprint (raw) when the event differs (a conflict); then "1" if records of the
# per-id layout may still exist, else "0" (the caller stops passing KEYS).
# Formatting a number as text costs Lua about as much as a redis.call: key names are built
# once per call per bucket level and per shard, not per lookup.
_CLAIM = Template("""
local window, span = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local prefix, digests, prints, width = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local horizon, h = tonumber(ARGV[8]), tonumber(ARGV[9])
local all = table.concat(ARGV, '', 10, 9 + h)
local tw = #ARGV[10]
local MIN, FILL, SPLIT, GROWTH = $min, $fill, $split, $growth
local SB, FB = $shard_bytes, $field_bytes
local current = math.floor(now / span)
local oldest = math.floor((now - window) / span)
local sets = prefix .. 'handlers'

local function ttl_of(b)
  return math.ceil((b + 1) * span + window - now) + 1
end

-- Records of the per-id layout: read only until the horizon after this layout's first claim.
local olds = {}
local legacy = false
if #KEYS > 0 then
  local marker = prefix .. 'legacy-until'
  local horizon_end = tonumber(redis.call('GET', marker))
  if not horizon_end then
    horizon_end = math.ceil(now + horizon)
    redis.call('SET', marker, horizon_end)
  end
  legacy = now < horizon_end
  if legacy then
    for s = 1, #KEYS, 1000 do  -- unpack stops at about 8,000 values
      local part = redis.call('MGET', unpack(KEYS, s, math.min(s + 999, #KEYS)))
      for k = 1, #part do olds[s + k - 1] = part[k] end
    end
  end
end

local levels = {}  -- bucket -> list of shard counts (false: no such bucket)
local function levels_of(b)
  local known = levels[b]
  if known == nil then
    known = false
    local raw = redis.call('HGET', prefix .. b, 'levels')
    if raw then
      known = {}
      for s in string.gmatch(raw, '%d+') do known[#known + 1] = tonumber(s) end
    end
    levels[b] = known
  end
  return known
end

-- The current bucket: created sized by the previous one, grown by a level when full.
local meta = prefix .. current
local n = #digests / (SB + FB)
local top
if not levels_of(current) then
  local before = tonumber(redis.call('HGET', prefix .. (current - 1), 'total') or '0')
  top = MIN
  while top * FILL < before do top = top * GROWTH end
  redis.call('HSET', meta, 'levels', tostring(top), 'n', 0, 'total', 0)
  redis.call('EXPIRE', meta, ttl_of(current))
  levels[current] = {top}
else
  local list = levels[current]
  top = list[#list]
  if tonumber(redis.call('HGET', meta, 'n')) + n > top * SPLIT then
    top = top * GROWTH
    list[#list + 1] = top
    redis.call('HSET', meta, 'levels', table.concat(list, ','), 'n', 0)
  end
end

-- Every level of every bucket a record may be in, newest first: its key prefix and shard count.
local places = {}
for b = current, oldest, -1 do
  local list = levels_of(b)
  if list then
    for j = #list, 1, -1 do places[#places + 1] = {prefix .. b .. ':' .. list[j] .. ':', list[j]} end
  end
end
local texts = {}  -- shard count -> shard number -> the number as text
for _, place in ipairs(places) do texts[place[2]] = texts[place[2]] or {} end
local function shard_text(shards, shard)
  local names = texts[shards]
  local name = names[shard]
  if not name then
    name = tostring(shard)
    names[shard] = name
  end
  return name
end

local function find(pick, field)
  for k = 1, #places do
    local place = places[k]
    local shards = place[2]
    local v = redis.call('HGET', place[1] .. shard_text(shards, pick % shards), field)
    if v then return v end
  end
  return nil
end

local names, numbers = {}, {}
local function number_of(tokens)  -- a set's 2-byte number, registered on first use
  local id = numbers[tokens]
  if id then return id end
  id = redis.call('HGET', sets, 's' .. tokens)
  if not id then
    local k = redis.call('HINCRBY', sets, '#', 1)
    if k > 65535 then error('too many distinct handler sets') end
    id = string.char(math.floor(k / 256), k % 256)
    redis.call('HSET', sets, 's' .. tokens, id, 'i' .. id, tokens)
  end
  numbers[tokens], names[id] = id, tokens
  return id
end
local function tokens_of(id)
  local tokens = names[id]
  if not tokens then
    tokens = redis.call('HGET', sets, 'i' .. id) or ''
    names[id] = tokens
  end
  return tokens
end

local added = 0
local level, ttl, written = prefix .. current .. ':' .. top .. ':', ttl_of(current), {}
texts[top] = texts[top] or {}
local function write(pick, field, fp, tokens)
  local key = level .. shard_text(top, pick % top)
  local fresh = not written[key] and redis.call('HLEN', key) == 0
  written[key] = true
  added = added + redis.call('HSET', key, field, fp .. number_of(tokens))
  if fresh then redis.call('EXPIRE', key, ttl) end
end

local function union(a, b)
  local list = {}
  for i = 1, #a, tw do list[#list + 1] = string.sub(a, i, i + tw - 1) end
  for i = 1, #b, tw do list[#list + 1] = string.sub(b, i, i + tw - 1) end
  table.sort(list)
  return table.concat(list)
end

local out = {}
for i = 1, n do
  local at = (i - 1) * (SB + FB)
  local a, b2, c, d = string.byte(digests, at + 1, at + SB)
  local pick = ((a * 256 + b2) * 256 + c) * 256 + d
  local field = string.sub(digests, at + SB + 1, at + SB + FB)
  local fp = string.sub(prints, (i - 1) * width + 1, i * width)
  local known, had = nil, ''
  local v = find(pick, field)
  if v then
    known, had = string.sub(v, 1, #v - 2), tokens_of(string.sub(v, -2))
  else
    local legacy = olds[i]
    if legacy then  -- "<fingerprint hex>,<token>,..." or, older, ",<token>,..."
      local comma = string.find(legacy, ',', 1, true) or (#legacy + 1)
      local hex = string.sub(legacy, 1, comma - 1)
      if hex ~= '' then
        known = string.gsub(hex, '..', function(x) return string.char(tonumber(x, 16)) end)
      end
      had = string.sub(legacy, comma)
      had = union(had, '')
      if known == nil then known = fp; write(pick, field, fp, had) end
    end
  end
  if known == nil then
    write(pick, field, fp, all)
    out[i] = all
  elseif known ~= fp then
    out[i] = '!' .. known
  else
    local new = ''
    for j = 10, 9 + h do
      if not string.find(had, ARGV[j], 1, true) then new = new .. ARGV[j] end
    end
    if new ~= '' then write(pick, field, fp, union(had, new)) end
    out[i] = new
  end
end
if added > 0 then
  redis.call('HINCRBY', meta, 'n', added)
  redis.call('HINCRBY', meta, 'total', added)
end
out[n + 1] = legacy and '1' or '0'
return out
""").substitute(
    min=MIN_SHARDS,
    fill=FILL,
    split=SPLIT_AT,
    growth=GROWTH,
    shard_bytes=SHARD_BYTES,
    field_bytes=FIELD_BYTES,
)


class Claim(NamedTuple):
    """What claiming one event gave: the handlers it is new for, or the conflict."""

    handlers: tuple[str, ...]
    #: The fingerprint on record when this event differs from it (a conflict; nothing claimed), else None.
    known: str | None = None


NOTHING = Claim(())  # a duplicate: new for no handler


def fingerprint(handler: str) -> str:
    """A short stable token for a handler task name, as stored in the dedupe records."""
    return "," + hashlib.sha1(handler.encode()).hexdigest()[:10] + ","


def generation_token(handler: str, generation: str) -> str:
    """The name a reprocess of generation ``generation`` claims ``handler`` under (``<handler>@gen<generation>``):
    an event is new for it once per generation, whatever ``handler`` itself had (tasks/pipeline/batcher.py)."""
    return f"{handler}@gen{generation}"


def id_digest(event_id: str) -> bytes:
    """The digest an event id is kept under: ``SHARD_BYTES`` that pick its shard, then its ``FIELD_BYTES``."""
    return hashlib.blake2b(event_id.encode(), digest_size=SHARD_BYTES + FIELD_BYTES).digest()


def bucket_seconds(window: int) -> int:
    """How long one time bucket of a dedupe window is (at least a second)."""
    return max(1, math.ceil(window / BUCKETS))


class Deduper:
    """Claims (event, handler) pairs so that each is dispatched once within the window.

    ``clock`` (seconds) replaces Redis' clock, for tests that step through buckets.
    """

    def __init__(self, client: redis.Redis, window: int, keys: Keys, clock: Callable[[], float] | None = None) -> None:
        self._client = client
        self._window = window
        self._span = bucket_seconds(window)
        self._keys = keys
        self._clock = clock
        self._claim = client.register_script(_CLAIM)
        self._legacy = True  # records of the per-id layout may exist: pass their keys (until the script says no)

    def note_window(self) -> int | None:
        """Record this deduper's window as the deployment's; returns the one recorded before when it
        differs (bucket numbers follow the window: records kept under another window are not found
        again, so events re-sent from before the change are handled again), else None."""
        before = self._client.getset(self._keys.dedupe_window, self._window)
        if before is None or int(before) == self._window:
            return None
        log.warning(
            "INSIGHTS_DEDUPE_WINDOW changed from %s to %d s: the dedupe records kept so far are not read any "
            "more, so events re-sent from before now are handled again",
            text(before),
            self._window,
        )
        return int(before)

    def claim(self, event_ids: Sequence[str], prints: Sequence[str], handlers: Sequence[str]) -> list[Claim]:
        """For each event id (with its event's fingerprint: hex digits, all of one length), the
        handlers it had not been claimed for (now claimed). One Redis call for the whole sequence.
        """
        if not event_ids or not handlers:
            return [NOTHING] * len(event_ids)
        tokens = {fingerprint(h): h for h in handlers}
        ordered = sorted(tokens)  # a set of handlers is one string: its tokens in order
        raw = [bytes.fromhex(p) for p in prints]
        width = len(raw[0])
        if any(len(p) != width for p in raw):
            raise ValueError("event fingerprints must all have the same length")
        args: list[bytes | str | int] = [
            self._window,
            self._span,
            "" if self._clock is None else repr(self._clock()),
            self._keys.dedupe_prefix,
            b"".join(id_digest(event_id) for event_id in event_ids),
            b"".join(raw),
            width,
            max(self._window, LEGACY_HORIZON),
            len(ordered),
            *ordered,
        ]
        keys = [self._keys.seen(event_id) for event_id in event_ids] if self._legacy else []
        answers = self._claim(keys=keys, args=args)
        self._legacy = answers.pop() == b"1"
        every = "".join(ordered).encode()
        everything = Claim(tuple(tokens.values()))
        return [everything if a == every else _claim_of(a, tokens) if a else NOTHING for a in answers]


def _claim_of(answer: bytes, tokens: dict[str, str]) -> Claim:
    """A conflict, or the claim for some of the handlers (the common cases are handled by ``claim``)."""
    if answer.startswith(b"!"):
        return Claim((), answer[1:].hex())
    answered = text(answer)
    return Claim(tuple(handler for token, handler in tokens.items() if token in answered))
