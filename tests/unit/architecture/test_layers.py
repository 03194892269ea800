"""The package's stairs run one way: each subpackage of `ripple` imports only from layers below
it, features never import each other, and no module grows past what one reading can hold."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[3] / "layers" / "ripple" / "ripple"

# Lowest first. A unit may import from its own layer's shared modules and from any lower layer;
# units of one feature layer (changes, broadcast, presence, notify) never import each other.
LAYERS: list[set[str]] = [
    {"codec", "config", "log", "observability", "metrics", "budget", "sigv4", "http1"},
    {"aws", "poster", "protocol", "auth", "events"},
    {"db", "gateway", "store"},
    {"shards"},
    {"catalog"},
    {"channels"},
    {"changes", "broadcast", "presence", "notify"},
    {"router", "outbox"},
    {"local"},
]
FEATURES = {"changes", "broadcast", "presence", "notify"}
MAX_LINES = 500


def _unit(module: str) -> str:
    """`ripple.channels.context` -> `channels`; `ripple.codec` -> `codec`."""
    return module.split(".")[1]


def _imports() -> dict[str, set[str]]:
    """Each unit of `ripple` and the units its modules import."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(("ripple", *path.relative_to(PACKAGE).with_suffix("").parts))
        if module == "ripple.__init__":
            continue
        unit = _unit(module)
        graph[unit]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("ripple.") and _unit(name) in _known():
                    if _unit(name) != unit:
                        graph[unit].add(_unit(name))
    return graph


def _known() -> set[str]:
    return {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(unit: str) -> list[str] | None:
        state[unit] = 1
        path.append(unit)
        for dep in sorted(graph.get(unit, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[unit] = 2
        return None

    for unit in sorted(graph):
        if unit not in state and (found := visit(unit)):
            return found
    return None


def test_every_unit_has_a_layer():
    assert _known() - set().union(*LAYERS) == set()


def test_no_import_cycle_between_subpackages():
    assert _cycle(_imports()) is None


def test_the_cycle_finder_finds_one():
    # The control: a graph with a cycle is reported, so the test above can fail.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_imports_go_down_the_stairs():
    rank = {unit: level for level, units in enumerate(LAYERS) for unit in units}
    upward = [(unit, dep) for unit, deps in _imports().items() for dep in deps
              if rank[dep] > rank[unit] or (rank[dep] == rank[unit] and {unit, dep} <= FEATURES)]
    assert upward == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_longer_than_one_reading(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES
