"""The house rules of ARCHITECTURE.md, checked on the source: layers import downwards only, no
import cycle longer than three files, no file over 500 lines, and no module outside the loop's
package touching a trainer's private attributes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "trainwell"

# Top to bottom: a module may import its own layer and the layers below it, never one above.
LAYERS = [
    ("front door", ["trainwell", "trainwell.__main__", "trainwell.cli", "trainwell.commands"]),
    ("use", ["trainwell.use"]),
    ("recipes", ["trainwell.recipes", "trainwell.bench"]),
    ("loop", ["trainwell.loop"]),
    ("callbacks", ["trainwell.callbacks"]),
    ("distributed", ["trainwell.distributed"]),
    ("reliability", ["trainwell.reliability"]),
    ("observe", ["trainwell.observe"]),
    ("models", ["trainwell.models"]),
    ("data", ["trainwell.data"]),
    ("files", ["trainwell.files"]),
    (
        "leaves",
        [
            "trainwell.config",
            "trainwell.exceptions",
            "trainwell.system",
            "trainwell.version",
            "trainwell.extras",
            "trainwell.display",
            "trainwell.option_errors",
        ],
    ),
]
MAX_LINES = 500
MAX_CYCLE = 3


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _layer(module: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (prefix != "trainwell" and module.startswith(prefix + ".")):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS and ARCHITECTURE.md"
    return best[0]


def _imports(module: str) -> set[str]:
    """Every trainwell module ``module`` imports, at any depth (functions and TYPE_CHECKING blocks included)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "trainwell":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "trainwell")
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imports(module) for module in MODULES}


def test_every_import_points_down_the_layers():
    upward = [
        f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for module, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if _layer(target) < _layer(module)
    ]
    assert upward == []


def test_no_import_cycle_is_longer_than_three_files():
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > MAX_CYCLE:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert cycles == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_source_file_is_over_500_lines(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(PACKAGE)} has {lines} lines: split it by concept"


def test_only_the_loop_touches_a_trainers_private_attributes():
    private = re.compile(r"\btrainer\._[a-z]")
    touching = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for module, path in MODULES.items()
        if not module.startswith("trainwell.loop")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if private.search(line)
    ]
    assert touching == []
