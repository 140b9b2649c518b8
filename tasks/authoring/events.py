"""Events as handlers see them: read-only mappings with derived properties."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tasks.authoring.event_ids import event_id

Property = Callable[["Event"], Any]


class Event(Mapping[str, Any]):
    """One tracking event: a read-only dict plus attributes from ``@event_property``.

    ``evt["user"]`` reads the raw field, ``evt.agent`` a registered property,
    ``evt.event`` is the raw dict itself (for storing it as is), ``evt.id`` the event's
    id (see ``tasks.authoring.event_ids``) and ``evt.received`` when it was accepted (unix time).
    """

    __slots__ = ("_computed", "_id", "_properties", "_raw", "received")

    def __init__(
        self,
        raw: Mapping[str, Any],
        properties: Mapping[str, Property] | None = None,
        id: str | None = None,
        received: float | None = None,
    ) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_properties", properties or {})
        object.__setattr__(self, "_computed", {})
        object.__setattr__(self, "_id", id)
        object.__setattr__(self, "received", received)

    @property
    def id(self) -> str:
        """The event's id (``tasks.authoring.event_ids``): given by the batcher, in its sender's scope.

        An event made without one (e.g. in a module's own test) derives it in the anonymous
        scope: the id it carries (typed, field-qualified), else a UUID5 of its canonical JSON.
        """
        if self._id is None:
            object.__setattr__(self, "_id", event_id(self._raw))
        return self._id

    @property
    def event(self) -> dict[str, Any]:
        """A copy of the raw event dict, safe to store or change."""
        return dict(self._raw)

    def __getitem__(self, key: str) -> Any:
        return self._raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __getattr__(self, name: str) -> Any:
        computed = self._computed
        if name in computed:
            return computed[name]
        prop = self._properties.get(name)
        if prop is None:
            known = ", ".join(sorted(self._properties)) or "none registered"
            raise AttributeError(f"events have no property {name!r} (known: {known}); see /event_properties")
        computed[name] = value = prop(self)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("events are read-only; copy evt.event to change a field")

    def __repr__(self) -> str:
        return f"Event({self._raw!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # copy/pickle would otherwise build an empty instance and recurse in __getattr__.
        return (type(self), (self._raw, self._properties, self._id, self.received))
