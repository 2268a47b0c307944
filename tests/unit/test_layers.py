"""The architecture as a test: every module imports, no import cycle, each
room imports only rooms below it, and imports inside functions are only the
deliberately deferred ones (docs/architecture.md draws the same layers)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("lockgate", "services", "tasks", "flows", "cli")

# Bottom to top. A module may import its own room and the rooms of lower
# layers, never a room beside it or above it.
LAYERS: list[tuple[str, ...]] = [
    ("lockgate.core",),
    ("lockgate.serving", "lockgate.scoring", "lockgate.models"),
    ("lockgate.export", "lockgate.families"),
    ("lockgate.data",),
    ("lockgate.registry",),
    ("lockgate.validation", "lockgate.training", "lockgate.monitoring", "lockgate.explaining"),
    ("lockgate.orchestration",),
    ("tasks",),
    ("flows",),
    ("cli",),
]
# The service is built from the serving side only: what a Bento carries.
SERVICE_MAY_IMPORT = ("lockgate.core", "lockgate.serving", "lockgate.export", "services")
LIBRARIES = [p for layer in LAYERS for p in layer] + ["services", "lockgate"]


def _modules() -> dict[str, Path]:
    found = {}
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _room(module: str) -> str:
    return max((p for p in LIBRARIES if module == p or module.startswith(p + ".")), key=len)


def _layer(room: str) -> int:
    return next((i for i, layer in enumerate(LAYERS) if room in layer), -1)


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The project modules an import statement names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".")[: len(module.split(".")) - node.level + (MODULES[module].name == "__init__.py")]
            base = ".".join(package + ([base] if base else []))
        names = [f"{base}.{a.name}" for a in node.names] + [base]
    found = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)
    return sorted(found)


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import that runs;
    imports under `if TYPE_CHECKING:` are for type checkers only."""
    tree = ast.parse(MODULES[module].read_text())
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend((target, child.lineno, in_function) for target in _resolve(module, child))
                if in_function and not _resolve(module, child):
                    found.append(("<library>", child.lineno, True))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_no_import_cycle():
    edges = {m: {t for t, _, _ in GRAPH[m] if t in MODULES} for m in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := walk(target)):
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(MODULES):
        if module not in state and (cycle := walk(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_each_room_imports_only_rooms_below_it():
    upward = []
    for module, imports in GRAPH.items():
        room = _room(module)
        for target, line, _ in imports:
            if target not in MODULES:
                continue
            other = _room(target)
            if room == "services":
                if not other.startswith(SERVICE_MAY_IMPORT):
                    upward.append(f"{module}:{line} imports {target}: the service takes only the serving side")
            elif other != room and other != "lockgate" and not _layer(other) < _layer(room):
                upward.append(f"{module}:{line} ({room}) imports {target} ({other})")
    assert not upward, "\n".join(upward)


def test_every_module_is_in_a_room():
    homeless = [m for m in MODULES if m.startswith("lockgate.") and _room(m) == "lockgate"]
    assert not homeless, f"modules outside the rooms of docs/architecture.md: {homeless}"


def test_imports_inside_functions_are_deliberately_deferred():
    """An import inside a function hides a dependency from this test and
    from readers; the only ones allowed defer a heavy or optional library
    (or a module that loads one), and say why on the line or the one above."""
    unexplained = []
    for module, imports in GRAPH.items():
        lines = MODULES[module].read_text().splitlines()
        for _, line, in_function in imports:
            if in_function and not _says_deferred(lines, line - 1):
                unexplained.append(f"{module}:{line}: {lines[line - 1].strip()}")
    assert not sorted(set(unexplained)), "\n".join(sorted(set(unexplained)))


def _says_deferred(lines: list[str], index: int) -> bool:
    """A "deferred" comment on the import, or on the run of import and
    comment lines just above it (one comment may explain a group)."""
    while index >= 0:
        text = lines[index].strip()
        if "deferred" in text:
            return True
        if not text.startswith(("import ", "from ", "#")):
            return False
        index -= 1
    return False


def test_the_layer_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check is not vacuous: a core module importing a family is caught."""
    core = REPO / "lockgate" / "core" / "records.py"
    source = core.read_text() + "\nfrom lockgate.families import FAMILIES\n"
    fake = tmp_path / "records.py"
    fake.write_text(source)
    monkeypatch.setitem(MODULES, "lockgate.core.records", fake)
    monkeypatch.setitem(GRAPH, "lockgate.core.records", _imports("lockgate.core.records"))
    with pytest.raises(AssertionError, match="lockgate.core.records.*imports lockgate.families"):
        test_each_room_imports_only_rooms_below_it()
