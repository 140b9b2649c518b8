"""``python -m tasks tokens create|revoke|list``: API tokens for an operator."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from fnmatch import fnmatchcase

from redis.exceptions import RedisError

from config.settings import ConfigError, Settings
from tasks.authoring.injection import INJECTED
from tasks.core.policy import RESOURCE_HELP, RESOURCES, TOKEN_PARAM, Policy
from tasks.core.tokens import TokenError, TokenStore
from tasks.errors import InsightsError
from tasks.storage.connections import redis_of
from tasks.storage.keys import Keys


def tokens_main(argv: list[str], settings: Settings) -> int:
    """``insights tokens create|revoke|list``; ``argv`` are the arguments after ``tokens``.

    Returns 0 on success, 1 when revoking a token that does not exist, 2 for bad arguments
    or a name that is taken.
    """
    parser = argparse.ArgumentParser(prog="insights tokens", description="Create, revoke or list API tokens.")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token and print its secret (shown only this once)")
    create.add_argument("name", help="unique name of the token, e.g. who or what it is for")
    for option, what in (("allow", "may use"), ("deny", "may never use")):
        create.add_argument(
            f"--{option}", action="extend", nargs="+", default=[], metavar="PATTERN",
            help=f"resources the token {what}: {RESOURCE_HELP} (fnmatch patterns)",
        )  # fmt: skip
    create.add_argument(
        "--lock", action="extend", nargs="+", default=[], metavar="PARAM=VALUE",
        help="lock an argument to a value, e.g. user=alice",
    )  # fmt: skip
    actions.add_parser("revoke", help="revoke a token by name").add_argument("name")
    actions.add_parser("list", help="list tokens: name, created, allow, deny, locked (never secrets)")
    args = parser.parse_args(argv)
    try:
        store = TokenStore(redis_of(settings), Keys(settings.redis_prefix))
        if args.action == "create":
            policy = Policy(tuple(args.allow), tuple(args.deny), _locks(args.lock))
            for pattern in (*policy.allow, *policy.deny):
                _check_pattern(pattern)
            print(store.create(args.name, policy))
            print(f"token {args.name!r} created; its secret above is shown only this once", file=sys.stderr)
            if not policy.allow:
                print("warning: the token allows nothing (no --allow)", file=sys.stderr)
            return 0
        if args.action == "revoke":
            if store.revoke(args.name):
                print(f"token {args.name!r} revoked")
                return 0
            print(f"error: no token named {args.name!r}", file=sys.stderr)
            return 1
        for token in store.list():
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(token.created))
            p = token.policy
            locked = ",".join(f"{k}={v}" for k, v in p.locked.items()) or "-"
            print(f"{token.name}\t{created}\tallow={','.join(p.allow) or '-'}\tdeny={','.join(p.deny) or '-'}"
                  f"\tlocked={locked}")  # fmt: skip
        return 0
    except (InsightsError, ConfigError, RedisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _locks(items: Iterable[str]) -> dict[str, str]:
    locked = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise TokenError(f"--lock takes PARAM=VALUE, got {item!r}")
        if name in INJECTED or name == TOKEN_PARAM:
            raise TokenError(f"{name!r} is filled in by the framework and cannot be locked")
        locked[name] = value
    return locked


def _check_pattern(pattern: str) -> None:
    """Refuse a pattern that can match no resource (e.g. a bare query name without ``query:``)."""
    if ":" not in pattern and not any(fnmatchcase(r, pattern) for r in RESOURCES):
        raise TokenError(f"pattern {pattern!r} matches no resource; resources are {RESOURCE_HELP}")
