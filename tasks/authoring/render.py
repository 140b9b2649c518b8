"""``render(template, context)``: Jinja2 templates from the calling module's ``templates/``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from tasks.errors import RegistrationError

# The analytics module whose function is running: (module name, its folder).
_current_module: ContextVar[tuple[str, Path] | None] = ContextVar("insights_current_module", default=None)


@contextmanager
def running_module(name: str, folder: Path) -> Iterator[None]:
    """Mark ``name`` (in ``folder``) as the module whose code runs, for ``render`` and ``static_url``."""
    token = _current_module.set((name, folder))
    try:
        yield
    finally:
        _current_module.reset(token)


def render(template: str, context: Mapping[str, Any] | None = None) -> str:
    """Render ``template`` from the calling module's ``templates/`` folder (autoescaped HTML)."""
    name, folder = _module()
    env = _environment(str(folder / "templates"), name)
    try:
        return env.get_template(template).render(**(context or {}))
    except jinja2.TemplateNotFound:
        raise RegistrationError(f"module {name!r} has no template {template!r} in {folder / 'templates'}") from None


def static_url(filename: str) -> str:
    """The URL of a file in the calling module's ``static/`` folder."""
    return module_static_url(_module()[0], filename)


def module_static_url(module: str, filename: str) -> str:
    """The URL under which the web app serves ``modules/<module>/static/<filename>``."""
    return f"/modules/{module}/static/{filename.lstrip('/')}"


def _module() -> tuple[str, Path]:
    current = _current_module.get()
    if current is None:
        raise RegistrationError("render() and static_url() work inside a view, query or handler of a module")
    return current


@lru_cache(maxsize=256)
def _environment(folder: str, module: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=True, undefined=jinja2.StrictUndefined)
    env.globals["static_url"] = lambda filename: module_static_url(module, filename)
    return env
