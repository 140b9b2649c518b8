"""Policies: what a caller may use and which parameters it has locked to which values, as API
tokens (web/auth.py) and restricted clients (tasks/client.py) apply them.

A policy names *resources* by ``fnmatch`` patterns (``view:<name>``, ``query:<name>``,
``event``, ``batches``, ``schema``, ``file:<module>``, ``health``): deny patterns win, and
nothing is allowed unless a pattern allows it. It also *locks* parameters (a student's
``user``, an instructor's ``course``): no caller can supply another value.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from tasks.authoring.injection import caller_arguments, injected_names, signature
from tasks.errors import InsightsError

TOKEN_PARAM = "access_token"  # the query parameter carrying a token over HTTP: reserved, never an argument
RESOURCES = ("event", "schema", "health", "batches")  # resources without a name part
RESOURCE_HELP = "view:NAME, query:NAME, file:MODULE, " + ", ".join(RESOURCES)


class LockedParameter(InsightsError, PermissionError):
    """A call gave a locked parameter another value than the policy's (HTTP 403)."""

    def __init__(self, parameter: str) -> None:
        super().__init__(f"parameter {parameter!r} is locked to this token's value")
        self.parameter = parameter


@dataclass(frozen=True)
class Policy:
    """What a token may call (``allow``/``deny`` patterns over resource names; deny wins,
    default deny) and which parameters it locks to which values (``locked``)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    locked: dict[str, str] = field(default_factory=dict)

    def permits(self, resource: str, *aliases: str) -> bool:
        """Whether the token may use ``resource``. Aliases name the same resource (a view or
        query registered under several names): some name must be allowed and none denied."""
        names = (resource, *aliases)
        if any(fnmatchcase(name, pattern) for name in names for pattern in self.deny):
            return False
        return any(fnmatchcase(name, pattern) for name in names for pattern in self.allow)

    def to_json(self) -> dict[str, Any]:
        """The policy as a JSON-ready object (``from_json`` reads it back)."""
        return {"allow": list(self.allow), "deny": list(self.deny), "locked": dict(self.locked)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        """A policy from what ``to_json`` wrote."""
        return cls(
            allow=tuple(str(p) for p in data.get("allow", ())),
            deny=tuple(str(p) for p in data.get("deny", ())),
            locked={str(k): str(v) for k, v in dict(data.get("locked", {})).items()},
        )

    def apply(
        self,
        arguments: Mapping[str, Any],
        channels: Iterable[Iterable[tuple[str, Any]]] = (),
        takes: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """``arguments`` with every locked parameter set to its locked value.

        ``channels`` are the (name, value) pairs of each input channel the arguments were
        merged from (query string, form, JSON body; repeated names too): if the arguments or
        any channel hold a locked parameter with another value, ``LockedParameter`` is raised
        — one matching channel does not excuse another. ``takes`` are the argument names the
        function accepts (None: any, as it takes ``params``); locked parameters it does not
        accept are dropped, so a token locking ``course`` can still call a global query.
        """
        locked = self.locked
        for name, value in (pair for pairs in [arguments.items(), *channels] for pair in pairs):
            if name in locked and value != locked[name]:
                raise LockedParameter(name)
        result = {**arguments, **locked}
        return {k: v for k, v in result.items() if k not in locked or takes is None or k in takes}


def accepted_arguments(func: Callable[..., Any]) -> frozenset[str] | None:
    """The argument names a caller may pass to ``func``; None if it takes any (``params``, ``**kwargs``)."""
    takes_any = any(p.kind == p.VAR_KEYWORD for p in signature(func).parameters.values())
    if takes_any or "params" in injected_names(func):
        return None
    return frozenset(caller_arguments(func))
