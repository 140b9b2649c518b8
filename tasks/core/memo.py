"""``@memoize_query``: query results cached in Redis by function and arguments.

While one caller computes a result, concurrent callers of the same function and arguments
wait for it (subscribed to a Redis channel, no sleep-polling) instead of computing it
again; if the computation crashes, its lock expires after ``timeout`` seconds and a
waiter takes over. Callers choose a mode with the ``_memo`` argument: ``refresh``
(recompute now), ``cached`` (cache only: an error when there is no result), ``clear``.

A result is cached under its function's code version (``code_version``: a hash of the
function's source) as well as its arguments: after a query is fixed and the processes
restarted, the fixed code never serves a result its old code computed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from tasks.authoring.injection import bind_arguments
from tasks.codec.serialization import dumps, loads
from tasks.errors import ArgumentError, CacheMiss, RegistrationError
from tasks.storage.keys import Keys

if TYPE_CHECKING:
    from tasks.core.registry import Spec

F = TypeVar("F", bound=Callable[..., Any])
MEMO_ATTR = "__insights_memo__"
MODE_ARGUMENT = "_memo"
MODES = ("use", "refresh", "cached", "clear")


@dataclass(frozen=True)
class MemoPolicy:
    """How long a result is kept, how long a computation may hold the lock, which arguments to ignore."""

    cache_time: float
    timeout: float
    ignores: tuple[str, ...] = ()


def memoize_query(cache_time: float = 300, timeout: float = 600, ignores: Iterable[str] = ()) -> Callable[[F], F]:
    """Cache a query's results for ``cache_time`` seconds; ``timeout`` bounds one computation."""
    if not (isinstance(cache_time, (int, float)) and cache_time > 0):
        raise RegistrationError(f"@memoize_query: cache_time must be seconds > 0, got {cache_time!r}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise RegistrationError(f"@memoize_query: timeout must be seconds > 0, got {timeout!r}")
    policy = MemoPolicy(float(cache_time), float(timeout), tuple(ignores))

    def mark(func: F) -> F:
        setattr(func, MEMO_ATTR, policy)
        return func

    return mark


def memo_policy(func: Callable[..., Any]) -> MemoPolicy | None:
    """The memoization policy of a function, if it is memoized."""
    return getattr(func, MEMO_ATTR, None)


def split_mode(arguments: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The caller's memo mode (``_memo``, default ``use``) and the remaining arguments."""
    rest = dict(arguments)
    mode = rest.pop(MODE_ARGUMENT, "use")
    if mode not in MODES:
        raise ArgumentError(f"{MODE_ARGUMENT} must be one of {', '.join(MODES)}, got {mode!r}")
    return mode, rest


def _code_bytes(code: CodeType) -> bytes:
    """A code object's bytecode and constants, nested code objects (inner functions, lambdas) included.

    Not ``repr`` of the constants: a nested code object's repr holds its memory address.
    """
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if isinstance(const, CodeType) else repr(const).encode())
    return b"\0".join(parts)


def code_version(func: Callable[..., Any]) -> str:
    """A short hash of a function's code: its source, or its bytecode and constants when the
    source cannot be read (a module shipped as .pyc, a function built by ``exec``).

    Computed when the function is registered (``Spec.code_version``), so it describes the code
    that runs even if the file is edited before the process restarts. Only the function's own
    code counts: a fix in a helper it calls changes nothing here (``_memo=clear`` or
    ``_memo=refresh`` then).
    """
    try:
        text = inspect.getsource(func).encode()
    except (OSError, TypeError):
        code = getattr(inspect.unwrap(func), "__code__", None)
        text = _code_bytes(code) if code is not None else repr(func).encode()
    return hashlib.sha1(text).hexdigest()[:10]


def _key_value(value: Any) -> Any:
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


class Memo:
    """Cached results, locks and completion notices of memoized queries, in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    def key(self, module: str, name: str, arguments: Mapping[str, Any], policy: MemoPolicy, version: str = "") -> str:
        """The cache key of a call: function, its code ``version`` and its non-ignored arguments.

        A number and its decimal string share an entry (``n=42`` from Python, ``n=42`` in a
        query string): HTTP arguments always arrive as strings.
        """
        kept = {k: _key_value(v) for k, v in sorted(arguments.items()) if k not in policy.ignores}
        digest = hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()
        return self._keys.memo(module, name, f"{version}-{digest}" if version else digest)

    def key_of(self, spec: Spec, args: Sequence[Any], kwargs: Mapping[str, Any], policy: MemoPolicy) -> str:
        """The cache key of calling ``spec``'s function with these arguments (no ``_memo`` among them),
        under the version of the code that computes it."""
        bound, leftovers = bind_arguments(spec.label, spec.func, args, kwargs)
        return self.key(spec.module, spec.name, {**bound, **leftovers}, policy, spec.code_version)

    def lookup(self, key: str) -> tuple[bool, Any]:
        """(True, value) when a result is cached, else (False, None)."""
        raw = self._client.get(key)
        return (False, None) if raw is None else (True, loads(raw))

    def age(self, key: str, policy: MemoPolicy) -> float | None:
        """Seconds since the cached result under ``key`` was stored; None when nothing is cached."""
        left = self._client.pttl(key)
        return None if left is None or left < 0 else policy.cache_time - left / 1000

    def clear(self, key: str) -> None:
        """Forget a cached result."""
        self._client.delete(key)

    def get_or_compute(self, key: str, policy: MemoPolicy, compute: Callable[[], Any], mode: str = "use") -> Any:
        """The cached result, or compute it once while concurrent callers wait for it."""
        if mode == "clear":
            self.clear(key)
            return None
        if mode != "refresh":
            hit, value = self.lookup(key)
            if hit:
                return value
            if mode == "cached":
                name_and_digest = ":".join(key.rsplit(":", 2)[1:])
                raise CacheMiss(f"no cached result yet for {name_and_digest}; call without _memo=cached")
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self._keys.memo_done(key))
        try:
            return self._compute_once(key, policy, compute, pubsub, fresh=mode == "refresh")
        finally:
            pubsub.close()

    def _compute_once(self, key: str, policy: MemoPolicy, compute: Callable[[], Any], pubsub: Any, fresh: bool) -> Any:
        lock, me = self._keys.memo_lock(key), uuid.uuid4().hex
        deadline = time.monotonic() + policy.timeout * 3
        while time.monotonic() < deadline:
            if not fresh:  # subscribed first, so a result stored from now on cannot be missed
                hit, value = self.lookup(key)
                if hit:
                    return value
            if self._client.set(lock, me, nx=True, px=int(policy.timeout * 1000)):
                try:
                    if not fresh:  # the holder before us may have stored its result after our lookup
                        hit, value = self.lookup(key)
                        if hit:
                            return value
                    value = compute()
                    self._client.set(key, dumps(value), px=int(policy.cache_time * 1000))
                    return value
                finally:
                    self._release(lock, me)
                    self._client.publish(self._keys.memo_done(key), "1")
            fresh = False  # someone else is computing: their result is fresh enough
            wait = max(0.01, (self._client.pttl(lock) or 0) / 1000)
            pubsub.get_message(timeout=wait)
        raise TimeoutError(f"gave up waiting for {key} after {policy.timeout * 3:g} s")

    def _release(self, lock: str, me: str) -> None:
        """Delete the lock only if it is still ours (it may have expired and been taken)."""
        self._client.eval(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, lock, me
        )
