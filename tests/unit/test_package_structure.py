"""The package's shape (issue 10): no import cycle between modules, no module past the size a reader holds.

Imports are read with :mod:`ast`, not executed. Only module-level imports count (those inside
functions or under ``if TYPE_CHECKING:`` run late, or never, and cannot form an import-time
cycle); ``from package import name`` counts as an import of ``package``, and of
``package.name`` when that is a module.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import re
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_carbon_provider"
#: About 600 lines: past that a module holds more than one concern (issue 10's bound).
MAX_LINES = 600
#: Modules allowed past it, each with the reason (none since issue 10's splits).
LARGE: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _top_level_imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)

    visit(tree.body)
    return {t for t in targets if t in modules and t != name}


def _graph() -> dict[str, set[str]]:
    """Return module -> modules it imports at import time (explicit imports only).

    Importing ``a.b.c`` also runs ``a/b/__init__``, but a parent package is always in
    ``sys.modules`` (perhaps half-initialised) before its submodules run, so that implicit
    edge cannot fail; ``from a.b import name`` inside ``a.b``'s own submodules can, and is an
    explicit edge here.
    """
    modules = _modules()
    return {name: _top_level_imports(path, name, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph[node]:
            if dep not in index:
                connect(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycle_in_the_package():
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles (module-level imports): {cycles}"


def test_the_cycle_check_finds_a_cycle():
    """The checker itself: two modules importing each other are reported."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_is_longer_than_a_reader_holds():
    long = {}
    for name, path in _modules().items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and name not in LARGE:
            long[name] = lines
    assert not long, f"modules over {MAX_LINES} lines (split them by concern): {long}"


_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc):`~?([A-Za-z_][\w.]*)`")
#: Modules that cannot be imported outside their runner (alembic's env.py).
_NOT_IMPORTABLE = {"airflow_carbon_provider.ledger.migrations.env"}


def _resolves(module: Any, target: str) -> bool:
    """Whether a Sphinx role target names something that exists, as Sphinx would look it up.

    A dotted name from ``airflow_carbon_provider`` (or ``airflow``) is imported; a bare one is
    looked up in the module, then as a member of the module's classes (a class docstring's
    ``:meth:`close``` names its own method), then among the builtins.
    """
    parts = target.split(".")
    obj: Any = None
    rest = parts
    if parts[0] in ("airflow_carbon_provider", "airflow"):
        for i in range(len(parts), 0, -1):
            try:
                obj, rest = importlib.import_module(".".join(parts[:i])), parts[i:]
                break
            except ImportError:
                continue
    elif hasattr(module, parts[0]):
        obj = module
    else:
        owners = [v for v in vars(module).values() if isinstance(v, type) and hasattr(v, parts[0])]
        obj = owners[0] if owners else builtins if hasattr(builtins, parts[0]) else None
    if obj is None:
        return False
    for name in rest:
        if not hasattr(obj, name) and name not in getattr(obj, "__annotations__", {}):
            return False
        obj = getattr(obj, name, None)
    return True


def test_docstrings_name_only_what_exists():
    """Issue 10: docstrings named attributes and modules that had moved or never existed."""
    missing = []
    for name, path in sorted(_modules().items()):
        if name in _NOT_IMPORTABLE:
            continue
        module = importlib.import_module(name)
        source = path.read_text(encoding="utf-8")
        for match in _ROLE.finditer(source):
            target = match.group(1)
            if "." not in target and re.search(rf"\bself\.{target}\s*[:=]", source):
                continue  # an instance attribute, set in __init__
            if not _resolves(module, target):
                missing.append(f"{name}: {match.group(0)}")
    assert not missing, "docstring references to nothing:\n" + "\n".join(missing)
