"""The core's modules import in one direction, down the layers listed in docs/architecture.md.

Every import counts: at module level, inside a function (a lazy one) and under
``if TYPE_CHECKING:`` (one for the type checker only). The list of layers is read from the
"Layers" section of the architecture page, so the page and the code cannot drift apart.
The testing kit (``taskloom/testing``) is not part of this: it sits above the whole core.
"""

from __future__ import annotations

import ast
import graphlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskloom

CORE = Path(taskloom.__file__).parent
ARCHITECTURE = Path(__file__).parents[1] / "docs" / "architecture.md"


def imports(package: Path) -> dict[str, set[str]]:
    """Module name -> the modules of ``package`` it imports, each way of importing counted."""
    modules = {path.stem for path in package.glob("*.py")}
    found: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        targets = found[path.stem] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets.update(t for t in _targets(node, package.name, modules) if t != path.stem)
    return found


def _targets(node: ast.AST, package: str, modules: set[str]) -> Iterator[str]:
    """The modules of ``package`` that one statement imports (``__init__`` for its own names)."""
    if isinstance(node, ast.Import):  # import taskloom.x
        for alias in node.names:
            path = alias.name.split(".")
            if path[0] == package:
                yield _module(path[1:], modules)
        return
    if not isinstance(node, ast.ImportFrom):
        return
    module = node.module.split(".") if node.module else []
    if node.level == 1:  # from .x import y, from . import x
        path = module
    elif node.level == 0 and module[:1] == [package]:  # from taskloom.x import y
        path = module[1:]
    else:
        return
    if path:
        yield _module(path, modules)
    else:  # the names are modules, or names of the package's __init__
        yield from (_module([alias.name], modules) for alias in node.names)


def _module(path: list[str], modules: set[str]) -> str:
    return path[0] if path and path[0] in modules else "__init__"


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports in ``graph``, or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None


def documented_layers() -> list[list[str]]:
    """The layers of the architecture page, lowest first: each an item of the numbered list
    in its section "Layers", naming its modules in backticks (``states.py``)."""
    text = ARCHITECTURE.read_text()
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    items = re.findall(r"^\d+\. .*?(?=^\d+\. |^$)", section + "\n", re.MULTILINE | re.DOTALL)
    layers = [re.findall(r"`([\w.]+)\.py`", item) for item in items]
    assert layers and all(layers), "the Layers section lists no modules"
    return layers


def test_the_core_imports_form_no_cycle() -> None:
    found = cycle(imports(CORE))
    assert found is None, "these core modules import each other in a circle: " + " <- ".join(found)


def test_every_import_points_down_the_documented_layers() -> None:
    layers = documented_layers()
    rank = {module: n for n, layer in enumerate(layers) for module in layer}
    listed = [module for layer in layers for module in layer]
    graph = imports(CORE)
    assert sorted(listed) == sorted(graph), (
        "the Layers section of docs/architecture.md must list each core module once: "
        f"missing {sorted(set(graph) - set(listed))}, extra or repeated "
        f"{sorted(m for m in set(listed) if listed.count(m) > 1 or m not in graph)}"
    )
    upward = sorted(
        f"{module} (layer {rank[module] + 1}) imports {target} (layer {rank[target] + 1})"
        for module, targets in graph.items()
        for target in targets
        if rank[target] > rank[module]
    )
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("def f():\n    from .b import x\n", "from .a import y\n"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import x\n", "from . import a\n"),
        ("import pkg.b\n", "def f():\n    from pkg import a\n"),
    ],
    ids=["lazy", "type-only", "absolute"],
)
def test_a_cycle_through_a_lazy_or_type_only_import_is_found(tmp_path: Path, a: str, b: str) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(a)
    (package / "b.py").write_text(b)
    assert sorted(set(cycle(imports(package)) or ())) == ["a", "b"]


def documented_module_limit() -> int:
    """The longest a module may be, as the "Size" section of the architecture page says."""
    section = ARCHITECTURE.read_text().split("\n## Size\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"no module over \*\*(\d+) lines\*\*", section)
    assert found, "the Size section states no module limit"
    return int(found[1])


def test_no_module_of_the_core_or_a_first_party_plugin_is_over_the_documented_limit() -> None:
    limit = documented_module_limit()
    root = ARCHITECTURE.parents[1]
    modules = [*(root / "core" / "taskloom").rglob("*.py"), *root.glob("plugins/*/taskloom_*/**/*.py")]
    assert len(modules) > 60, "the core's and the plugins' modules were not found"
    long = sorted(
        f"{path.relative_to(root)}: {lines} lines"
        for path in modules
        if (lines := path.read_text().count("\n")) > limit
    )
    assert not long, f"over {limit} lines (split each along a seam):\n" + "\n".join(long)
