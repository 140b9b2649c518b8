"""The layers of the code: each imports only the layers below it (docs/architecture.md).

Imports under ``if TYPE_CHECKING:`` are type hints only and do not count.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from config.settings import ROOT

# Lowest first. A module may import its own layer and the ones before it.
LAYERS = [
    ("config",),
    ("tasks.errors",),
    ("tasks.codec",),
    ("tasks.storage",),
    ("tasks.authoring",),
    ("tasks.core",),
    ("tasks.pipeline",),
    ("tasks.schedule",),
    ("tasks.app", "tasks.worker"),
    ("tasks.ops", "tasks.client", "tasks.__main__"),
    ("web",),
]
STANDALONE = ("tasks.sender", "tasks.synthetic")  # vendorable: the standard library only


def layer_of(module: str) -> int | None:
    """The rank of the layer ``module`` belongs to (None: not ours, or the ``tasks`` facade)."""
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def our_modules() -> dict[str, Path]:
    """Every module of config/, tasks/ and web/, by dotted name."""
    found = {}
    for top in ("config", "tasks", "web"):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import in a file that runs (not under ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text())
    hints = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:  # a relative import stays in its package
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


MODULES = our_modules()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) is not None))
def test_a_module_imports_only_its_layer_and_the_ones_below(module: str) -> None:
    rank = layer_of(module)
    assert rank is not None
    upward = []
    for line, imported in imports_of(MODULES[module]):
        target = layer_of(imported)
        if target is not None and target > rank:
            upward.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {imported}")
    assert not upward, f"{module} is in layer {LAYERS[rank]}, below what it imports:\n" + "\n".join(upward)


@pytest.mark.parametrize("module", STANDALONE)
def test_the_sender_and_generator_use_only_the_standard_library(module: str) -> None:
    foreign = [
        f"{line}: {imported}"
        for line, imported in imports_of(MODULES[module])
        if imported.split(".")[0] not in sys.stdlib_module_names
    ]
    assert not foreign, f"{module} must stay importable alone, but imports {foreign}"


def test_importing_the_sender_loads_no_framework_and_no_third_party_library() -> None:
    import subprocess

    probe = (
        "import sys, tasks.sender, tasks.synthetic; "
        "loaded = [m for m in ('celery', 'kombu', 'numpy', 'pandas', 'flask', 'redis', 'pymongo', 'tasks.app') "
        "if m in sys.modules]; print(loaded)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
