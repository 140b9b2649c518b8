"""Every error the framework raises, under one root.

InsightsError
 ├── EmbeddedServerError    an embedded Redis / Mongo-protocol server did not start
 ├── EmbeddedServerLimit    a MongoDB operation the embedded nx-27017 would get silently wrong
 ├── RegistrationError      a decorator or module was used wrongly (decoration time)
 │    ├── DuplicateName     two definitions share a name, neither is a fallback
 │    └── RegistryFrozen    registration after the registry was finalized
 ├── UnknownName            no view / query / handler / property by that name
 ├── ArgumentError          a call's arguments do not fit the function (HTTP 400)
 ├── CacheMiss              a cache-only call found no cached result (HTTP 404)
 ├── ReadOnlyError          a write through a read-only view of another module's store
 └── InvalidEvent           an incoming event cannot be parsed (HTTP 400)

ConfigError (``config.settings``, a ValueError: config imports nothing of the framework)
                            a setting is missing or malformed
"""

from __future__ import annotations


class InsightsError(Exception):
    """Root of every error raised by the Insights framework."""


class EmbeddedServerError(InsightsError):
    """An embedded Redis or Mongo-protocol server failed to start or answer."""


class EmbeddedServerLimit(InsightsError):
    """A module's database operation that the embedded nx-27017 would silently get wrong, refused.

    Raised only when the module's database is on nx-27017 (no ``MONGO_URL``); a real MongoDB runs
    the same operation. The message names the operator and the portable form that works on both.
    """

    def __init__(self, operation: str, wrong: str, portable: str) -> None:
        super().__init__(
            f"{operation} refused: the embedded MongoDB server (nx-27017, used when MONGO_URL is not set) "
            f"{wrong}. Portable form (works there and on MongoDB): {portable}. "
            "Or set MONGO_URL to a real MongoDB. See docs/authoring.md, 'Embedded MongoDB: what works'."
        )
        self.operation = operation


class RegistrationError(InsightsError):
    """A decorator was given bad options or used on something it cannot wrap."""


class DuplicateName(RegistrationError):
    """Two views, queries or properties share a name and neither is a fallback."""


class RegistryFrozen(RegistrationError):
    """Something tried to register after the registry was finalized."""


class UnknownName(InsightsError):
    """No view, query, handler or event property is registered under that name."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"no {kind} named {name!r}; see /schema for what is registered")
        self.kind = kind
        self.name = name


class ArgumentError(InsightsError):
    """The arguments of a call do not fit the function's parameters."""


class CacheMiss(InsightsError):
    """A memoized query was asked for its cached result only, and there is none."""


class ReadOnlyError(InsightsError):
    """A module tried to write through a read-only view of a module's database, file store or cache."""

    @classmethod
    def refusing(cls, module: str, store: str, operation: str) -> ReadOnlyError:
        """The error for ``operation`` on the read-only ``store`` ("database", ...) of ``module``."""
        return cls(
            f"{operation} refused: this is a read-only view of the {store} of module {module!r} "
            f"(get_replica_*); a module writes only its own {store}"
        )


class InvalidEvent(InsightsError):
    """An incoming event (or batch) cannot be parsed into JSON objects."""
