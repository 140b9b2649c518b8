"""The registry: every view, query, event handler and event property of the loaded modules.

Decorators only record declarations on functions; ``discover`` imports the analytics
modules and adds what they declared; ``freeze`` ends registration once the application
has bound the specs to Celery tasks.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import pkgutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from config.queues import CRON_PREFIX, HANDLER_PREFIX, QUERY_PREFIX, VIEW_PREFIX
from tasks.authoring.decorators import Declaration, declarations_of, declared_in
from tasks.authoring.injection import caller_arguments, parameters, required_arguments
from tasks.core.checks import expected_type
from tasks.core.memo import code_version, memo_policy
from tasks.errors import DuplicateName, RegistrationError, RegistryFrozen, UnknownName

log = logging.getLogger(__name__)
KINDS = ("view", "query", "handler", "property", "cron")
TASK_PREFIX = {
    "view": VIEW_PREFIX,
    "query": QUERY_PREFIX,
    "handler": HANDLER_PREFIX,
    "property": "property.",
    "cron": CRON_PREFIX,  # scheduled jobs, tasks/schedule.py
}
KIND_LABEL = {
    "view": "view",
    "query": "query",
    "handler": "event handler",
    "property": "event property",
    "cron": "scheduled job",
}
PER_MODULE_KINDS = ("handler", "cron")  # task named by module and function: cron.<module>.<function>


@dataclass(frozen=True)
class Spec:
    """One registered function: what it is, what it is called, and which module owns it."""

    kind: str
    names: tuple[str, ...]
    func: Callable[..., Any]
    module: str
    queue: str | None = None
    fallback: bool = False
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        """The primary name (the first of ``names``)."""
        return self.names[0]

    @property
    def label(self) -> str:
        """How messages refer to this function, e.g. ``query 'get_grades'``."""
        return f"{KIND_LABEL[self.kind]} {self.name!r}"

    @property
    def doc(self) -> str:
        """The decorator's ``description``, else the function's docstring, cleaned up."""
        description = self.options.get("description")
        return inspect.cleandoc(description) if description else inspect.getdoc(self.func) or ""

    @property
    def where(self) -> str:
        """File and line of the definition, for error messages."""
        code = getattr(self.func, "__code__", None)
        if code is None:
            return f"{self.func.__module__}.{self.func.__qualname__}"
        return f"{code.co_filename}:{code.co_firstlineno}"

    @cached_property
    def code_version(self) -> str:
        """A short hash of the function's code (tasks/core/memo.py ``code_version``), part of a memoized
        result's key. Computed once, when a memoized function is registered: it describes the code loaded."""
        return code_version(self.func)

    @property
    def category(self) -> list[str]:
        """The caller-supplied parameters: what the function is 'per' (empty means global)."""
        return caller_arguments(self.func)

    @property
    def task_name(self) -> str:
        """The Celery task name operators see, e.g. ``query.get_grades`` (properties run in-process)."""
        if self.kind in PER_MODULE_KINDS:
            return f"{TASK_PREFIX[self.kind]}{self.module}.{self.func.__name__}"
        return f"{TASK_PREFIX[self.kind]}{self.name}"

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for ``/schema``."""
        return {
            "class": self.kind,
            "name": self.name,
            "aliases": list(self.names[1:]),
            "module": self.module,
            "category": self.options.get("category") or self._derived_category(),
            "parameters": self.category,
            "required": required_arguments(self.func),
            "arguments": self.arguments,
            "signature": self.signature,
            "doc": self.doc,
            "task": self.task_name,
            "queue": self.queue,
            "options": dict(self.options),
            "memoized": memo_policy(self.func) is not None,
        }

    @property
    def arguments(self) -> list[dict[str, Any]]:
        """Each caller-supplied parameter: its name, the type its values are converted to
        (``tasks.core.checks``; None when it declares none), whether it is required and its default."""
        described = []
        for parameter in parameters(self.func):
            if parameter.name in self.category:
                expected = expected_type(self.func, parameter.name)
                entry: dict[str, Any] = {"name": parameter.name, "type": None if expected is None else str(expected)}
                entry["required"] = parameter.default is parameter.empty
                if not entry["required"]:
                    entry["default"] = _plain_default(parameter.default)
                described.append(entry)
        return described

    @property
    def signature(self) -> str:
        """How a caller calls it, with defaults: ``histogram(values, title='Histogram')``."""
        shown = [a["name"] if a["required"] else f"{a['name']}={a['default']!r}" for a in self.arguments]
        return f"{self.name}({', '.join(shown)})"

    def _derived_category(self) -> str:
        return "global" if not self.category else "per " + ", ".join(self.category)

    @property
    def shard_by(self) -> str | None:
        """For an ordered handler, what its events are partitioned by: "user", "resource" or None.

        A ``single_process`` handler is on the user shards too, always shard 0 (tasks/pipeline/dispatch.py).
        """
        if self.options.get("per_user") or self.options.get("single_process"):
            return "user"
        if self.options.get("per_resource"):
            return "resource"
        return None


def _plain_default(value: Any) -> Any:
    """A default as JSON shows it: plain values as they are, anything else as its ``repr``."""
    if value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return repr(value)


def public(spec: Spec) -> bool:
    """Whether a spec is served by name: its primary name does not start with ``_`` (private)."""
    return not spec.name.startswith("_")


class Registry:
    """The application's one registry of analytics functions, keyed by kind and name."""

    def __init__(self) -> None:
        self._specs: dict[str, dict[str, Spec]] = {kind: {} for kind in KINDS}
        self._modules: dict[str, str] = {}
        self._declared = 0  # declarations registered so far (an entry that adds none is an error)
        self._frozen = False

    # Registration -------------------------------------------------------------------
    def add(self, spec: Spec) -> None:
        """Register a spec under each of its names; a fallback yields to a real definition."""
        if self._frozen:
            raise RegistryFrozen(f"cannot register {spec.label} from {spec.where}: the registry is finalized")
        if memo_policy(spec.func) is not None:
            spec.code_version  # noqa: B018 - computed now, while the file on disk is the code loaded
        table = self._specs[spec.kind]
        keys = (spec.task_name,) if spec.kind in PER_MODULE_KINDS else spec.names
        for key in keys:
            old = table.get(key)
            if old is None or old.func is spec.func or (old.fallback and not spec.fallback):
                table[key] = spec
            elif spec.fallback and not old.fallback:
                continue
            else:
                raise DuplicateName(
                    f"{spec.label}: the name {key!r} is defined twice, at {old.where} and at {spec.where}; "
                    "rename one, or mark the generic one with fallback=True so the other replaces it"
                )

    def add_declared(self, module: str, func: Callable[..., Any], declaration: Declaration) -> None:
        """Register one decorator's declaration of ``func`` as part of analytics module ``module``
        (a warning names a function without a docstring or ``description``: /schema and the dashboard show it)."""
        if not inspect.getdoc(func) and not declaration.options.get("description"):
            log.warning(
                "%s %s.%s has no docstring: /schema and the dashboard show none for it",
                KIND_LABEL[declaration.kind],
                func.__module__,
                func.__qualname__,
            )
        self._declared += 1
        self.add(
            Spec(
                declaration.kind,
                declaration.names,
                func,
                module,
                declaration.queue,
                declaration.fallback,
                dict(declaration.options),
            )
        )

    def add_module(self, module: str, python_module: ModuleType) -> None:
        """Register every decorated function defined in ``python_module``.

        First what its names hold (a function wrapped after decoration registers as the
        wrapper), then every other declaration made in it: a function whose name a later
        definition rebound still registers.
        """
        own = python_module.__name__
        seen: set[int] = set()
        for value in list(vars(python_module).values()):
            if callable(value) and getattr(value, "__module__", None) == own:
                for declaration in declarations_of(value):
                    seen.add(id(declaration))
                    self.add_declared(module, value, declaration)
        for func, declaration in declared_in(python_module):
            if id(declaration) not in seen:
                self.add_declared(module, func, declaration)

    def discover(self, packages: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
        """Import analytics modules: each child of a package, or a named module itself; skip ``exclude``d names.

        A module that sets ``OPT_IN = True`` (the test module) is not loaded as a child of its
        package, only when named itself (``modules.testmodule``). A package without child modules
        is a single module itself. An entry that is not importable,
        or that loads no decorated function (unless all it holds is excluded or opt-in), is a
        ``RegistrationError`` naming the entry and why.
        """
        skip = set(exclude)
        loaded: list[str] = []
        for package_name in packages:
            package = _import_entry(package_name)
            declared_before, passed_over = self._declared, False
            children = _children(package)
            if children and not getattr(package, "OPT_IN", False):
                passed_over = bool(set(children) & skip)
                for child in sorted(set(children) - skip):
                    module = _import(f"{package_name}.{child}")
                    if getattr(module, "OPT_IN", False):
                        passed_over = True
                    else:
                        loaded.append(self._load(child, module))
            elif package_name.rsplit(".", 1)[-1] not in skip:
                loaded.append(self._load(package_name.rsplit(".", 1)[-1], package))
            else:
                passed_over = True
            if self._declared == declared_before and not passed_over:
                raise RegistrationError(_why_empty(package_name, package))
        return loaded

    def _load(self, module: str, python_module: ModuleType) -> str:
        other = self._modules.setdefault(module, python_module.__name__)
        if other != python_module.__name__:
            raise RegistrationError(
                f"two analytics modules are named {module!r}: {other} and {python_module.__name__}; "
                "module names must be unique (each owns a database and a file store)"
            )
        for submodule in _walk(python_module):
            self.add_module(module, submodule)
        return module

    def freeze(self) -> None:
        """End registration (the application has bound every spec to a task)."""
        self._frozen = True

    # Lookup -------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> Spec:
        """The spec registered under ``name``; ``UnknownName`` if there is none."""
        try:
            return self._specs[kind][name]
        except KeyError:
            raise UnknownName(KIND_LABEL[kind], name) from None

    def names(self, kind: str) -> list[str]:
        """Every name (aliases included) registered for a kind."""
        return sorted(self._specs[kind])

    def specs(self, kind: str) -> list[Spec]:
        """The distinct specs of a kind (aliases collapsed), ordered by module and name."""
        unique = {id(s): s for s in self._specs[kind].values()}
        return sorted(unique.values(), key=lambda s: (s.module, s.name))

    def __iter__(self) -> Iterator[Spec]:
        for kind in KINDS:
            yield from self.specs(kind)

    def module_folder(self, module: str) -> Path:
        """The folder of an analytics module (its package, or the folder of a one-file module)."""
        try:
            return Path(sys.modules[self._modules[module]].__file__ or ".").parent
        except KeyError:
            raise UnknownName("module", module) from None

    @property
    def modules(self) -> list[str]:
        """Names of the analytics modules loaded."""
        return sorted(self._modules)

    def module_named(self, name: str) -> str:
        """The loaded analytics module called ``name``, or whose Python module is ``name`` (``modules.grades``)."""
        if name in self._modules:
            return name
        for module, python_module in self._modules.items():
            if python_module == name:
                return module
        raise RegistrationError(f"no analytics module {name!r} is loaded; loaded: {', '.join(self.modules)}")


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise _import_error(name, exc) from exc


def _import_error(name: str, exc: Exception) -> RegistrationError:
    return RegistrationError(f"could not import analytics module {name!r}: {type(exc).__name__}: {exc}")


def _import_entry(name: str) -> ModuleType:
    """Import one ``INSIGHTS_MODULES`` entry; a name Python cannot find is an error saying so."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
            raise _import_error(name, exc) from exc
        raise RegistrationError(
            f"INSIGHTS_MODULES entry {name!r}: no package or module {exc.name!r} on the Python path "
            "(is it installed, or its parent folder on PYTHONPATH? sys.path: "
            f"{', '.join(p or '.' for p in sys.path)})"
        ) from exc
    except Exception as exc:
        raise _import_error(name, exc) from exc


def _children(package: ModuleType) -> list[str]:
    """The public child modules of a package (none for a plain module)."""
    if not hasattr(package, "__path__"):
        return []
    return [c.name for c in pkgutil.iter_modules(package.__path__) if not c.name.startswith("_")]


def _why_empty(name: str, package: ModuleType) -> str:
    """Why the ``INSIGHTS_MODULES`` entry ``name`` registered nothing."""
    where = ", ".join(getattr(package, "__path__", None) or [package.__file__ or "?"])
    if hasattr(package, "__path__") and package.__file__ is None and not _children(package):
        return (
            f"INSIGHTS_MODULES entry {name!r}: {where} is a folder with no __init__.py and no modules in it "
            "(a namespace package); add an __init__.py and modules with decorated functions, or fix the name"
        )
    return (
        f"INSIGHTS_MODULES entry {name!r} ({where}) has no decorated function (@view, @query, @event_handler, "
        "@event_property or @cron) in any of its modules; decorate some, or remove the entry"
    )


def _walk(module: ModuleType) -> Iterator[ModuleType]:
    yield module
    if hasattr(module, "__path__"):
        # Recurse ourselves: pkgutil.walk_packages would import '_private' packages and yield their children.
        for info in pkgutil.iter_modules(module.__path__, prefix=module.__name__ + "."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                yield from _walk(_import(info.name))
