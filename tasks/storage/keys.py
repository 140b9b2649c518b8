"""Every Redis key Insights uses, in one place: what each family holds and how long it lives.

All of them start with one prefix, ``INSIGHTS_REDIS_PREFIX`` (``insights:`` by default), so
that two deployments can share one Redis. The application builds its ``Keys`` from its
settings (``Services.keys``, ``Insights.keys``) and hands it to every store; nothing else
spells a key.

Celery's own keys are not under the prefix: the broker's queues (named by the ``QUEUE_*``
settings, and the shard queues ``events.user.K``, ...), kombu's ``unacked`` hash and
``_kombu.binding.*`` sets, and the result backend's ``celery-task-meta-<task id>``. Task
ids are unique, so deployments sharing a Redis need only queues of their own (``QUEUE_*``),
or a Redis database each (``redis://host:6379/1``).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "insights:"


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one deployment, all starting with ``prefix``."""

    prefix: str = DEFAULT_PREFIX

    # Intake (tasks/pipeline/stream.py) -----------------------------------------------
    @property
    def intake_stream(self) -> str:
        """Stream of accepted requests, one entry each, read by the batchers' consumer group.
        No TTL: a batcher deletes an entry once its events are dispatched."""
        return f"{self.prefix}intake"

    @property
    def intake_unreadable(self) -> str:
        """Stream of intake entries a batcher could not decode, kept for an operator.
        No TTL: capped at about 10,000 entries (the oldest trimmed)."""
        return f"{self.prefix}intake:unreadable"

    # Dedupe (tasks/pipeline/dedupe.py) ----------------------------------------------
    @property
    def dedupe_prefix(self) -> str:
        """What every dedupe key starts with; the claim script appends the rest, as the three
        methods below spell it (their TTLs are theirs)."""
        return f"{self.prefix}dedupe:"

    def dedupe_bucket(self, bucket: int) -> str:
        """Hash: a time bucket's shard counts (``levels``, comma-separated), records in its newest
        level (``n``) and in all (``total``). TTL: ``INSIGHTS_DEDUPE_WINDOW`` after the bucket ends."""
        return f"{self.dedupe_prefix}{bucket}"

    def dedupe_shard(self, bucket: int, shards: int, shard: int) -> str:
        """Hash: one shard of a time bucket's records, id digest -> event fingerprint and handler-set
        number (about a hundred records, packed by Redis). TTL: ``INSIGHTS_DEDUPE_WINDOW`` after the bucket ends."""
        return f"{self.dedupe_prefix}{bucket}:{shards}:{shard}"

    @property
    def dedupe_legacy_until(self) -> str:
        """String: the time (Unix seconds) until which claims read ``seen`` keys (records of the per-id
        layout), set by the first claim of the bucketed layout. No TTL: a few bytes."""
        return f"{self.dedupe_prefix}legacy-until"

    @property
    def dedupe_window(self) -> str:
        """String: the dedupe window (seconds) the last batcher started with; a batcher starting with
        another one says that the records kept so far are not read any more. No TTL: a few bytes."""
        return f"{self.dedupe_prefix}window"

    @property
    def dedupe_handler_sets(self) -> str:
        """Hash: every set of handlers claimed together, numbered (``s<tokens>`` -> number,
        ``i<number>`` -> tokens, ``#`` the last number). No TTL: an entry per distinct set, a few bytes each."""
        return f"{self.dedupe_prefix}handlers"

    def seen(self, event_id: str) -> str:
        """An event's fingerprint and the handlers it was dispatched to, one key per id, as written
        before the bucketed layout above; only read now. TTL ``INSIGHTS_DEDUPE_WINDOW`` at the time."""
        return f"{self.prefix}seen:{event_id}"

    # Batches (tasks/pipeline/batch_store.py) -----------------------------------------
    def batch(self, batch_id: str) -> str:
        """A batch's record: its state, handler tasks and their outcomes. TTL ``INSIGHTS_BATCH_RECORD_TTL``,
        ``INSIGHTS_BATCH_DONE_TTL`` once the batch is finished."""
        return f"{self.prefix}batch:{batch_id}"

    def batch_events(self, batch_id: str) -> str:
        """A batch's events, read by each of its handler tasks. TTL ``INSIGHTS_BATCH_RECORD_TTL``;
        deleted when the batch is done."""
        return f"{self.prefix}batchdata:{batch_id}"

    def done(self, batch_id: str, label: str) -> str:
        """The outcome a handler task keeps once it has handled its events of a batch.
        TTL ``INSIGHTS_BATCH_RECORD_TTL``, ``INSIGHTS_BATCH_DONE_TTL`` once the batch is finished."""
        return f"{self.prefix}done:{batch_id}:{label}"

    def receipt(self, receipt: str) -> str:
        """The batches a request's events went into (a receipt is its intake entry id).
        TTL ``INSIGHTS_BATCH_RECORD_TTL``, ``INSIGHTS_BATCH_DONE_TTL`` once one of its batches is finished."""
        return f"{self.prefix}receipt:{receipt}"

    @property
    def pending_batches(self) -> str:
        """Sorted set of unfinished batch ids by when their tasks were last sent (tasks/pipeline/redrive.py).
        No TTL: a batch leaves it when it is done, or when the redriver finds its record gone."""
        return f"{self.prefix}batches:pending"

    # Single-active processes and single jobs (tasks/storage/lease.py, tasks/storage/once.py) --
    def lease(self, name: str) -> str:
        """A lease held by one process cluster-wide (``queue:<shard queue>``: its one consumer;
        ``batcher``: the active batcher); its value is the holder's id.
        TTL ``INSIGHTS_LEASE_TTL``, renewed by the holder's heartbeat."""
        return f"{self.prefix}lease:{name}"

    def once(self, job: str, period: int) -> str:
        """Marks that a single job (``maintenance.sweep_files``, ...) ran in one period (its number
        since the epoch) somewhere in the cluster. TTL two periods."""
        return f"{self.prefix}once:{job}:{period}"

    # Kept for an operator ----------------------------------------------------------------
    @property
    def dead_letters(self) -> str:
        """Stream of events handlers failed on after every retry (tasks/pipeline/dead_letters.py).
        No TTL: kept until retried, capped at ``INSIGHTS_DEADLETTER_MAX`` (the oldest trimmed)."""
        return f"{self.prefix}deadletters"

    @property
    def conflicts(self) -> str:
        """Stream of events that differ from the event on record under their id (tasks/pipeline/conflicts.py).
        No TTL: capped at ``INSIGHTS_CONFLICTS_MAX`` (the oldest trimmed)."""
        return f"{self.prefix}conflicts"

    # Runs and quotas (tasks/core/runs.py, web/limits.py) ------------------------------
    def run(self, task_id: str) -> str:
        """A run started without waiting (``POST /run``): its function, client and owner.
        TTL ``INSIGHTS_RUN_EXPIRES``; deleted when its result is delivered."""
        return f"{self.prefix}run:{task_id}"

    def runs_of(self, client: str) -> str:
        """Sorted set of a client's outstanding runs by deadline. TTL ``INSIGHTS_RUN_EXPIRES`` from
        its latest run; members past their deadline are dropped when counted."""
        return f"{self.prefix}runs:client:{client}"

    @property
    def run_deadlines(self) -> str:
        """Sorted set of every outstanding run by deadline. No TTL: a run leaves it when delivered, or
        when ``maintenance.expire_runs`` (beat, every minute) forgets it."""
        return f"{self.prefix}runs:deadlines"

    def rate(self, client: str) -> str:
        """When a client's request-rate bucket is next empty (ms, Redis' clock).
        TTL: until then (set by the rate script)."""
        return f"{self.prefix}rate:{client}"

    # API tokens (tasks/core/tokens.py) -----------------------------------------------
    @property
    def tokens(self) -> str:
        """Hash: SHA-256 digest of a token -> its name, policy and creation time.
        No TTL: a token lives until revoked."""
        return f"{self.prefix}auth:tokens"

    @property
    def token_names(self) -> str:
        """Hash: token name -> digest. No TTL: a token lives until revoked."""
        return f"{self.prefix}auth:names"

    # Modules' results and storage --------------------------------------------------------
    def memo(self, module: str, name: str, digest: str) -> str:
        """A ``@memoize_query`` result (tasks/core/memo.py) of one function and arguments (their digest).
        TTL the decorator's ``cache_time``."""
        return f"{self.prefix}memo:{module}:{name}:{digest}"

    @staticmethod
    def memo_lock(memo_key: str) -> str:
        """Held while one caller computes the result of ``memo_key``. TTL the decorator's ``timeout``."""
        return f"{memo_key}:lock"

    @staticmethod
    def memo_done(memo_key: str) -> str:
        """The pub/sub channel told when the result of ``memo_key`` is stored (a channel: nothing is kept)."""
        return f"{memo_key}:done"

    def cache(self, module: str) -> str:
        """The namespace of a module's ``cache`` (tasks/storage/cache.py): its keys follow this prefix.
        TTL per key, as the module sets it (none: until deleted)."""
        return f"{self.prefix}cache:{module}:"

    def fs_expiry(self, module: str) -> str:
        """Sorted set of a module's ``fs`` files by expiry time (tasks/storage/fs.py).
        No TTL: a file leaves it when removed or swept (``maintenance.sweep_files``)."""
        return f"{self.prefix}fs:expiry:{module}"

    # Beat (tasks/schedule.py) ----------------------------------------------------------
    @property
    def beat(self) -> str:
        """RedBeat's key prefix (``redbeat_key_prefix``): the schedule and the single-beat lock.
        RedBeat keeps them; the lock expires ``INSIGHTS_BEAT_LOCK_TIMEOUT`` after beat stopped extending it."""
        return f"{self.prefix}beat"
