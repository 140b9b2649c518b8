"""A Python client for views and queries: local, remote over HTTP, merged, or restricted.

``Client.query`` and ``Client.view`` expose every function as a method with its real
signature and docstring (``help(client.query.get_grades)``, tab completion through
``dir``)::

    client = Client.remote("http://insights:8000", token="...")
    client.query.student_activity("alice", "demo-101")  # positional args map to parameters in order
    client.query["edx.djt_three_name"]()              # names that are not identifiers

Where a function runs is a :class:`Backend`'s business:

- :class:`LocalBackend` calls the registry of an :class:`~tasks.app.Insights` in-process;
- :class:`RemoteBackend` calls a server's HTTP API (``GET /schema``, ``POST /<kind>/<name>``);
- :class:`MergedBackend` joins several: a function is served by the first that has it;
- :class:`PolicyBackend` allows or denies functions (``fnmatch`` patterns over
  ``view:<name>`` / ``query:<name>``, as API tokens do) and locks parameters to values.

Modules use the same machinery: ``Insights.remotes`` holds backends the injected
``query``/``view`` objects fall back to for names the local registry does not know.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tasks.authoring.injection import caller_arguments, parameters, required_arguments
from tasks.core.functions import Backend, FunctionInfo, make_method
from tasks.core.policy import Policy
from tasks.core.registry import KIND_LABEL
from tasks.core.remote import RemoteBackend, RemoteError, by_name
from tasks.errors import UnknownName

if TYPE_CHECKING:
    from tasks.app import Insights

__all__ = [
    "Backend",
    "Client",
    "FunctionInfo",
    "Functions",
    "LocalBackend",
    "MergedBackend",
    "PolicyBackend",
    "RemoteBackend",
    "RemoteError",
    "make_method",
]

KINDS = ("view", "query")


# Backends ---------------------------------------------------------------------------
class LocalBackend:
    """The functions of an :class:`~tasks.app.Insights` registry, run in this process.

    Views return their raw result (no HTML presentation); errors are the framework's own
    (``UnknownName``, ``ArgumentError``, or whatever the function raises).
    """

    def __init__(self, insights: Insights) -> None:
        self.insights = insights

    def functions(self, kind: str) -> dict[str, FunctionInfo]:
        """The registered functions of ``kind``."""
        infos = []
        for spec in self.insights.registry.specs(kind):
            defaults = {p.name: p.default for p in parameters(spec.func) if p.default is not p.empty}
            infos.append(
                FunctionInfo(
                    name=spec.name,
                    kind=kind,
                    parameters=tuple(caller_arguments(spec.func)),
                    required=tuple(required_arguments(spec.func)),
                    doc=spec.doc,
                    aliases=spec.names[1:],
                    defaults={k: v for k, v in defaults.items() if k in caller_arguments(spec.func)},
                )
            )
        return by_name(infos)

    def call(self, kind: str, name: str, kwargs: dict[str, Any]) -> Any:
        """Run the function in-process, with its module's injections."""
        return self.insights.call(self.insights.registry.get(kind, name), (), kwargs)

    def __repr__(self) -> str:
        return f"LocalBackend({', '.join(self.insights.registry.modules)})"


class MergedBackend:
    """Several backends as one: each function is served by the first backend that has it."""

    def __init__(self, backends: Sequence[Backend]) -> None:
        self.backends = list(backends)

    def functions(self, kind: str) -> dict[str, FunctionInfo]:
        """The union of every backend's functions; for a name in several, the first one's."""
        merged: dict[str, FunctionInfo] = {}
        for backend in self.backends:
            for name, info in backend.functions(kind).items():
                merged.setdefault(name, info)
        return merged

    def owner(self, kind: str, name: str) -> Backend:
        """The backend serving function ``name`` (later backends are not asked once one has it)."""
        for backend in self.backends:
            if name in backend.functions(kind):
                return backend
        raise UnknownName(KIND_LABEL[kind], name)

    def call(self, kind: str, name: str, kwargs: dict[str, Any]) -> Any:
        """Run the function on the first backend that has it."""
        return self.owner(kind, name).call(kind, name, kwargs)

    def __repr__(self) -> str:
        return f"MergedBackend({self.backends!r})"


class PolicyBackend:
    """Another backend restricted like an API token (a :class:`~tasks.core.policy.Policy`).

    ``allow``/``deny`` are ``fnmatch`` patterns over ``view:<name>`` / ``query:<name>``;
    deny wins, and a function registered under several names is allowed when some name is
    allowed and none denied. Denied functions are hidden and refused (``PermissionError``).
    ``locked`` sets parameters to fixed values: a call passing another value is refused,
    one passing none gets the locked value; functions not taking a locked parameter do not
    get it. Locked parameters appear in signatures as optional, defaulting to their value.
    """

    def __init__(
        self,
        inner: Backend,
        allow: Iterable[str] = ("*",),
        deny: Iterable[str] = (),
        locked: Mapping[str, Any] | None = None,
    ) -> None:
        self.inner = inner
        self.policy = Policy(tuple(allow), tuple(deny), dict(locked or {}))

    def permits(self, kind: str, info: FunctionInfo) -> bool:
        """Whether this policy lets a caller use the function."""
        return self.policy.permits(*(f"{kind}:{name}" for name in info.names))

    def functions(self, kind: str) -> dict[str, FunctionInfo]:
        """The permitted functions, with locked parameters made optional."""
        return {
            name: self._locked_info(info)
            for name, info in self.inner.functions(kind).items()
            if self.permits(kind, info)
        }

    def _locks_for(self, info: FunctionInfo) -> dict[str, Any]:
        """The locked parameters ``info``'s function takes (the others are not passed to it)."""
        return {k: v for k, v in self.policy.locked.items() if k in info.parameters}

    def _locked_info(self, info: FunctionInfo) -> FunctionInfo:
        locks = self._locks_for(info)
        required = tuple(p for p in info.required if p not in locks)
        return replace(info, required=required, defaults={**info.defaults, **locks}) if locks else info

    def call(self, kind: str, name: str, kwargs: dict[str, Any]) -> Any:
        """Run a permitted function with the locked parameters applied."""
        info = self.inner.functions(kind).get(name)
        if info is None:
            raise UnknownName(KIND_LABEL[kind], name)
        if not self.permits(kind, info):
            raise PermissionError(f"this client may not use {kind}:{name}")
        return self.inner.call(kind, name, self.policy.apply(kwargs, takes=info.parameters))

    def __repr__(self) -> str:
        p = self.policy
        return f"PolicyBackend({self.inner!r}, allow={p.allow}, deny={p.deny}, locked={p.locked})"


# Methods and the client -------------------------------------------------------------
class Functions:
    """The views or the queries of a backend as methods: ``functions.name(*args, **kwargs)``,
    ``functions["dotted.name"]()``; ``dir()`` lists the names for tab completion."""

    def __init__(self, backend: Backend, kind: str) -> None:
        self._backend = backend
        self._kind = kind

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> Callable[..., Any]:
        functions = self._backend.functions(self._kind)
        info = functions.get(name)
        if info is None:
            close = difflib.get_close_matches(name, list(functions), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise AttributeError(f"no {KIND_LABEL[self._kind]} named {name!r}{hint}")
        return make_method(self._backend, info, name)

    def __contains__(self, name: object) -> bool:
        return name in self._backend.functions(self._kind)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._backend.functions(self._kind)))

    def __dir__(self) -> list[str]:
        return sorted(n for n in self._backend.functions(self._kind) if n.isidentifier())

    def __repr__(self) -> str:
        return f"<{self._kind} functions: {', '.join(self)}>"


class Client:
    """Views and queries of a backend as methods: ``client.query.x(...)``, ``client.view.y(...)``."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.query = Functions(backend, "query")
        self.view = Functions(backend, "view")

    @classmethod
    def local(cls, insights: Insights) -> Client:
        """A client running the functions of ``insights`` in this process, and those only its remotes
        (``INSIGHTS_REMOTES``) have on their servers."""
        local = LocalBackend(insights)
        return cls(MergedBackend([local, *insights.remotes]) if insights.remotes else local)

    @classmethod
    def remote(cls, base_url: str, token: str | None = None, timeout: float = 30.0) -> Client:
        """A client of the Insights server at ``base_url`` (``token``: an API token)."""
        return cls(RemoteBackend(base_url, token, timeout))

    @classmethod
    def merged(cls, *clients: Client) -> Client:
        """One client for several: each function from the first client that has it."""
        return cls(MergedBackend([c.backend for c in clients]))

    def restricted(
        self, allow: Iterable[str] = ("*",), deny: Iterable[str] = (), locked: Mapping[str, Any] | None = None
    ) -> Client:
        """This client limited to permitted functions, with ``locked`` parameters fixed."""
        return Client(PolicyBackend(self.backend, allow, deny, locked))

    def __repr__(self) -> str:
        return f"Client({self.backend!r})"
