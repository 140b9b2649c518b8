"""API tokens: random secrets shown once, stored in Redis only as their SHA-256 digest, with
the token's name and :class:`~tasks.core.policy.Policy`."""

from __future__ import annotations

import builtins
import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import WatchError

from tasks.core.policy import Policy
from tasks.errors import InsightsError
from tasks.storage.keys import Keys


@dataclass(frozen=True)
class Token:
    """A stored token's name, policy and creation time (epoch seconds); never its secret."""

    name: str
    policy: Policy
    created: float

    def to_json(self) -> dict[str, Any]:
        """The record stored under the token's digest."""
        return {"name": self.name, "policy": self.policy.to_json(), "created": self.created}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Token:
        """A token from its stored record."""
        return cls(str(data["name"]), Policy.from_json(data["policy"]), float(data["created"]))


class TokenError(InsightsError):
    """A token cannot be created (its name is taken or invalid)."""


def digest(token: str) -> str:
    """The SHA-256 hex digest a token is stored under."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Tokens in Redis, stored only as digests. Looking a token up hashes it first, so the
    lookup's timing depends on the digest, never on how much of a secret was guessed right."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self._tokens = keys.tokens  # hash: digest of a token -> its JSON record
        self._names = keys.token_names  # hash: token name -> digest

    def create(self, name: str, policy: Policy) -> str:
        """Store a new token named ``name`` (unique) with ``policy``; returns its secret, which
        is not stored and cannot be shown again."""
        if not name or name != name.strip():
            raise TokenError(f"a token name must be non-empty without surrounding spaces, got {name!r}")
        secret = secrets.token_urlsafe(32)
        key = digest(secret)
        record = json.dumps(Token(name, policy, time.time()).to_json())
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(self._names)
                if pipe.hexists(self._names, name):
                    raise TokenError(f"a token named {name!r} exists; revoke it first or choose another name")
                pipe.multi()
                pipe.hset(self._names, name, key)
                pipe.hset(self._tokens, key, record)
                pipe.execute()
            except WatchError:
                raise TokenError(f"tokens changed while creating {name!r}; try again") from None
        return secret

    def revoke(self, name: str) -> bool:
        """Revoke the token named ``name`` at once; False if there is none."""
        key = self.redis.hget(self._names, name)
        if key is None:
            return False
        with self.redis.pipeline() as pipe:
            pipe.hdel(self._tokens, key)
            pipe.hdel(self._names, name)
            pipe.execute()
        return True

    def lookup(self, token: str) -> Token | None:
        """The live token whose secret is ``token``, or None (unknown or revoked)."""
        record = self.redis.hget(self._tokens, digest(token))
        return Token.from_json(json.loads(record)) if record is not None else None

    def list(self) -> builtins.list[Token]:
        """Every live token, by name (no secrets: they are not stored)."""
        records = self.redis.hgetall(self._tokens).values()
        return sorted((Token.from_json(json.loads(r)) for r in records), key=lambda t: t.name)
