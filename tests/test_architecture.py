"""The package layout holds (docs/architecture.md): no import cycle, counting imports inside
functions and under TYPE_CHECKING too; the Event Hubs SDK only in `phiwatch/eventhubs/`; the
environment read only in `config.py`; the package root holds the core concepts only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("phiwatch", "detections")
# The core concepts, and nothing else, at the package root.
ROOT_MODULES = {
    "__init__",
    "__main__",
    "batch",
    "config",
    "dedupe",
    "envelope",
    "identifier_redaction",
    "logs",
    "model",
    "pipeline",
    "pseudonym",
    "quarantine",
    "surrogates",
    "wiring",
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, wherever the import statement is. `from pkg import x`
    counts as importing `pkg.x` when that is a module, else `pkg`."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                child = f"{module}.{alias.name}"
                found.add(child if child in MODULES else module)
    # Importing a.b.c runs a/__init__ and a/b/__init__ first: a package's own imports are on
    # the path too, unless the importer is inside that package (its init already ran).
    for module in list(found):
        parts = module.split(".")
        for depth in range(1, len(parts)):
            parent = ".".join(parts[:depth])
            if not (name == parent or name.startswith(parent + ".")):
                found.add(parent)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_a_cycle_through_a_package_init_counts():
    # detection imports kinds.base; kinds/__init__ imports a kind that imports detection.
    assert "phiwatch.detect.kinds" in _imports(
        "phiwatch.detect.detection", MODULES["phiwatch.detect.detection"]
    )
    assert "phiwatch.samplegen" not in GRAPH["phiwatch.samplegen.population"]


def test_the_checker_finds_a_cycle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert GRAPH["phiwatch.detect.stage"], "the graph is empty: the checker reads nothing"
    assert _cycles(GRAPH) == []


def _sources(path: Path) -> str:
    return path.read_text()


def test_only_the_eventhubs_package_imports_the_event_hubs_sdk():
    importers = set()
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            if any(n == "azure.eventhub" or n.startswith("azure.eventhub.") for n in names):
                importers.add(name)
    assert importers, "nothing imports azure.eventhub: the check cannot fail"
    assert {m for m in importers if not m.startswith("phiwatch.eventhubs")} == set()


@pytest.mark.parametrize("path", [*MODULES.values(), ROOT / "function_app.py"], ids=str)
def test_the_environment_is_read_only_in_config(path: Path):
    if path == ROOT / "phiwatch" / "config.py":
        assert "os.environ" in path.read_text()  # where it is read
        return
    tree = ast.parse(path.read_text())
    reads = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
        and node.attr in {"environ", "getenv", "environb"}
    ]
    assert reads == [], f"{path.name} reads the environment (lines {reads}): use config.py"


def test_the_package_root_holds_only_core_modules():
    root = {p.stem for p in (ROOT / "phiwatch").glob("*.py")}
    assert root - ROOT_MODULES == set(), "a new root module: give it a package"
    assert ROOT_MODULES - root == set(), "ROOT_MODULES names a module that is gone"


def test_the_batch_types_are_a_leaf_for_sinks_detect_and_rules():
    for name, deps in GRAPH.items():
        if name.startswith(("phiwatch.sinks", "phiwatch.detect", "phiwatch.rules", "detections")):
            assert "phiwatch.pipeline" not in deps, f"{name} imports the orchestrator"
    # A package init that imports nothing (phiwatch/archive/__init__.py) adds nothing.
    empty_inits = {m for m, p in MODULES.items() if p.name == "__init__.py" and not GRAPH[m]}
    assert GRAPH["phiwatch.batch"] - empty_inits <= {
        "phiwatch.archive.names",
        "phiwatch.envelope",
        "phiwatch.model",
        "phiwatch.surrogates",
    }
