"""fairpool's modules import only downward, and never in a cycle (docs/design.md, "Layers").

The layers, from the bottom: leaves, mechanisms, the pool core, observers,
facades. A module may import modules of its own layer or below. Imports
made only for type checking (inside ``if TYPE_CHECKING:``) are left out:
they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fairpool"

LAYERS: dict[str, int] = {
    # 0 leaves: native primitives, errors, lanes, statistics values, fault reports, compatibility
    "_native": 0,
    "_compat": 0,
    "errors": 0,
    "lanes": 0,
    "statistics": 0,
    "_faultlog": 0,
    # 1 mechanisms: the fair queue, the job and its transition table, the hub channel,
    # the hub-safe lock, the observer slot
    "_fairqueue": 1,
    "_job": 1,
    "_hubchannel": 1,
    "_hublock": 1,
    "_hooks": 1,
    "_tally": 1,
    # 2 the pool core
    "_admission": 2,
    "_waiters": 2,
    "_workers": 2,
    "_core": 2,
    "_observed": 2,
    "_exitrule": 2,
    "_lifecycle": 2,
    "_snapshot": 2,
    "hybridlock": 2,
    # 3 observers
    "trace": 3,
    "locks": 3,
    "hubwatch": 3,
    "_statslog": 3,
    "_tracefile": 3,
    "_argrepr": 3,
    "otel": 3,
    "otel_metrics": 3,
    "metrics_http": 3,
    # 4 facades
    "pool": 4,
    "_default": 4,
    "tpool": 4,
    "proxy": 4,
    "patch": 4,
    "libwrap": 4,
    "report": 4,
    "demo": 4,
    "testing": 4,
    "autopatch": 4,
    "aio": 4,
    "futurist_executor": 4,
    "__main__": 4,
    "_traceread": 4,
    "__init__": 4,
}
NAMES = {0: "leaves", 1: "mechanisms", 2: "core", 3: "observers", 4: "facades"}


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _runtime_imports(path: Path) -> set[str]:
    """The fairpool modules ``path`` imports at run time (at any depth, type-checking blocks left out)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking_block(node):
            return
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "fairpool":
                parts = node.module.split(".")
                if len(parts) > 1:
                    found.add(parts[1])
                else:
                    found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "fairpool" and len(parts) > 1:
                    found.add(parts[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {name for name in found if (PACKAGE / f"{name}.py").exists()}


def _graph() -> dict[str, set[str]]:
    return {path.stem: _runtime_imports(path) for path in PACKAGE.glob("*.py")}


def test_every_module_has_a_layer() -> None:
    missing = sorted(set(_graph()) - set(LAYERS))
    assert not missing, f"modules with no layer in tests/test_layers.py (and docs/design.md): {missing}"


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_imports_go_only_downward(module: str) -> None:
    graph = _graph()
    if module not in graph:
        pytest.skip(f"fairpool/{module}.py does not exist")
    mine = LAYERS[module]
    upward = sorted(
        f"{target} ({NAMES[LAYERS[target]]})" for target in graph[module] if LAYERS.get(target, 0) > mine
    )
    assert not upward, f"fairpool.{module} ({NAMES[mine]}) imports upward: {', '.join(upward)}"


def test_the_core_imports_neither_tracing_nor_patching() -> None:
    graph = _graph()
    for module in ("_core", "_admission", "_workers", "_waiters", "_exitrule", "_lifecycle"):
        bad = graph[module] & {"trace", "patch", "hubwatch", "locks", "tpool", "pool"}
        assert not bad, f"fairpool.{module} imports {sorted(bad)}: observers must subscribe through _hooks"


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
