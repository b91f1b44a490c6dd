"""The architecture, checked: imports flow bot -> adapters -> middleware, with no cycles.

A newcomer should be able to read the layering off the tree and trust it, so
these tests parse (never import) every module of ``bot/``, ``middleware/`` and
``adapters/`` and fail on an import cycle, on an upward import, and on a
module over 400 lines. Every import counts, wherever it sits: at module level,
inside a function, or under ``if TYPE_CHECKING:`` (those are how cycles hide),
and so does a string literal that names a module exactly (``"bot.cli.run"``
handed to ``importlib.import_module``). The checker's own tests build a small
tree in a temporary folder, so a checker that sees nothing cannot pass.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "middleware", "adapters")
MAX_LINES = 400
# Top-level package -> the packages it must never import (imports flow downward only).
FORBIDDEN: dict[str, frozenset[str]] = {
    "middleware": frozenset({"bot", "adapters"}),
    "adapters": frozenset({"bot"}),
}

Graph = dict[str, set[str]]


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under the packages."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported(base: str, name: str, modules: Mapping[str, Path]) -> str | None:
    """The module ``from base import name`` loads: the submodule if there is one, else base.

    A module that does not exist (a broken import, or one outside the packages)
    gives None: the import itself fails elsewhere, and guessing a parent here
    would invent edges.
    """
    if f"{base}.{name}" in modules:
        return f"{base}.{name}"
    return base if base in modules else None


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from, relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    # Inside a package's __init__, "." is the package itself.
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*anchor, node.module] if node.module else anchor)


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """Every known module that ``module`` imports, at any depth of its syntax tree."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    targets: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, is_package, node)
            # `from pkg import sub` imports the submodule when there is one.
            targets.update(_imported(base, alias.name, modules) for alias in node.names)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "." in node.value
            and node.value in modules
        ):
            targets.add(node.value)  # a dynamic import by name
    return {t for t in targets if t is not None and t != module}


def import_graph(root: Path, packages: Iterable[str]) -> Graph:
    modules = module_files(root, packages)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so a long import chain cannot hit the recursion limit.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(found)


def one_cycle(graph: Graph, component: list[str]) -> list[str]:
    """A shortest import path from the component's first module back to itself."""
    members = set(component)
    start = component[0]
    paths = {target: [start, target] for target in graph[start] if target in members}
    frontier = sorted(paths)
    while start not in paths:
        following: list[str] = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    return paths[start]


def upward_imports(graph: Graph) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if target.split(".")[0] in FORBIDDEN.get(module.split(".")[0], frozenset())
    )


def oversized(root: Path, packages: Iterable[str]) -> list[str]:
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in module_files(root, packages).items()
    }
    return [f"{name}: {n} lines" for name, n in sorted(sizes.items()) if n > MAX_LINES]


def describe_cycles(graph: Graph) -> list[str]:
    return [
        f"{len(component)} modules in a cycle: {', '.join(component)}\n"
        f"    for example: {' -> '.join(one_cycle(graph, component))}"
        for component in cycles(graph)
    ]


# -- the tree ----------------------------------------------------------------


def test_no_import_cycles() -> None:
    found = describe_cycles(import_graph(ROOT, PACKAGES))
    assert not found, "import cycles (break them with a narrow protocol):\n" + "\n".join(found)


def test_imports_flow_bot_to_adapters_to_middleware() -> None:
    found = upward_imports(import_graph(ROOT, PACKAGES))
    assert not found, "upward imports (middleware < adapters < bot):\n" + "\n".join(found)


def test_no_module_over_400_lines() -> None:
    found = oversized(ROOT, PACKAGES)
    assert not found, f"modules over {MAX_LINES} lines (split by concept):\n" + "\n".join(found)


# -- the checker itself --------------------------------------------------------


def _write(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_sees_hidden_imports_and_names_the_cycle(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "bot/__init__.py": "",
            "bot/app.py": "from bot.admin import commands\n",
            "bot/admin/__init__.py": "from .commands import run\n",
            "bot/admin/commands.py": "def run():\n    from ..replay import again\n",
            "bot/replay.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot.app import X\n"
            ),
            "bot/cli.py": 'COMMANDS = ["bot.app"]\nimport importlib\n',
            "middleware/__init__.py": "",
            "middleware/run.py": "import json\nimport bot.replay\nfrom bot.gone import x\n",
            "adapters/__init__.py": "",
            "adapters/slack.py": "from middleware import run\n" + "x = 1\n" * MAX_LINES,
        },
    )
    graph = import_graph(tmp_path, PACKAGES)
    assert graph["bot.admin"] == {"bot.admin.commands"}  # relative, in a package __init__
    assert graph["bot.admin.commands"] == {"bot.replay"}  # function-level, relative
    assert graph["bot.replay"] == {"bot.app"}  # under TYPE_CHECKING
    assert graph["bot.cli"] == {"bot.app"}  # a module named in a string
    assert graph["adapters.slack"] == {"middleware.run"}  # a submodule via `from pkg import`
    assert cycles(graph) == [["bot.admin.commands", "bot.app", "bot.replay"]]
    assert describe_cycles(graph) == [
        "3 modules in a cycle: bot.admin.commands, bot.app, bot.replay\n"
        "    for example: bot.admin.commands -> bot.replay -> bot.app -> bot.admin.commands"
    ]
    assert upward_imports(graph) == ["middleware.run imports bot.replay"]
    assert oversized(tmp_path, PACKAGES) == [f"adapters.slack: {MAX_LINES + 1} lines"]


def test_the_checker_passes_a_layered_tree(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "bot/__init__.py": "",
            "bot/app.py": "import adapters.base\nfrom middleware.types import Request\n",
            "middleware/__init__.py": "from middleware.types import Request\n",
            "middleware/types.py": "import json\n",
            "adapters/__init__.py": "",
            "adapters/base.py": "from middleware import types\n",
        },
    )
    graph = import_graph(tmp_path, PACKAGES)
    assert graph["bot.app"] == {"adapters.base", "middleware.types"}
    assert cycles(graph) == []
    assert upward_imports(graph) == []
    assert oversized(tmp_path, PACKAGES) == []
