"""The package's layering, read from the source with ``ast``: who may import whom.

* ``cifar_search.train`` knows nothing of the search: no module reachable from it imports
  ``optuna`` or anything in ``cifar_search.search`` (directly, or through a shared module such
  as ``cifar_search.errors``).
* Nothing below ``cifar_search.cli`` imports ``cifar_search.cli``.
* There is no import cycle between the package's modules.

Every ``import`` counts, at module level or inside a function (the lazy imports that keep
``--help`` fast are imports all the same), except those under ``if TYPE_CHECKING:``, which never
run. The rules are checked on the real tree and, to show that the checks can fail, on small
planted trees that break each one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cifar_search"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The modules ``path`` (module ``name``) imports: the package's own by their module name
    (``from pkg import sub`` names the submodule), third-party ones by their top name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
            out.update(subs)
            if len(subs) < len(node.names):  # names from the module itself, not submodules
                out.add(base)
    own = {m for m in out if m in modules}
    return own | {m.split(".")[0] for m in out if m not in modules and m}


def import_graph(root: Path) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    return {name: imports_of(path, name, modules) - {name} for name, path in files.items()}


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module ``start`` imports directly or not, with one import chain to it."""
    chains = {start: [start]}
    todo = [start]
    while todo:
        here = todo.pop()
        for nxt in sorted(graph.get(here, ())):
            if nxt not in chains:
                chains[nxt] = [*chains[here], nxt]
                todo.append(nxt)
    return chains


def train_violations(graph: dict[str, set[str]], pkg: str) -> list[str]:
    out = []
    for name in sorted(m for m in graph if m == f"{pkg}.train" or m.startswith(f"{pkg}.train.")):
        for target, chain in reachable(graph, name).items():
            if target == "optuna" or target.startswith(f"{pkg}.search"):
                out.append(" -> ".join(chain))
    return out


def cli_violations(graph: dict[str, set[str]], pkg: str) -> list[str]:
    cli = f"{pkg}.cli"
    return [f"{name} -> {target}" for name, targets in sorted(graph.items())
            if not (name == cli or name.startswith(cli + ".") or name == f"{pkg}.__main__")
            for target in sorted(targets) if target == cli or target.startswith(cli + ".")]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE)


def test_the_graph_sees_the_package(graph: dict[str, set[str]]) -> None:
    assert "cifar_search.train.trainer" in graph and "cifar_search.search.objective" in graph
    assert "optuna" in graph["cifar_search.search.objective"]
    assert "cifar_search.train.recipe" in graph["cifar_search.search.objective"]


def test_train_knows_nothing_of_the_search(graph: dict[str, set[str]]) -> None:
    assert train_violations(graph, "cifar_search") == []


def test_nothing_below_the_cli_imports_it(graph: dict[str, set[str]]) -> None:
    assert cli_violations(graph, "cifar_search") == []


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


# --- the rules fail where they should: planted trees --------------------------------------


def _plant(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    root = tmp_path / "pkg"
    for rel, text in {"__init__.py": "", "train/__init__.py": "", "search/__init__.py": "",
                      "cli/__init__.py": "", "errors.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return import_graph(root)


def test_planted_optuna_import_in_train_is_caught(tmp_path: Path) -> None:
    g = _plant(tmp_path, {"train/trainer.py": "def f():\n    import optuna\n"})
    assert train_violations(g, "pkg") == ["pkg.train.trainer -> optuna"]


def test_planted_search_import_through_a_shared_module_is_caught(tmp_path: Path) -> None:
    g = _plant(tmp_path, {"train/data.py": "from pkg.errors import E\n",
                          "errors.py": "from pkg.search import study\n",
                          "search/study.py": ""})
    assert "pkg.train.data -> pkg.errors -> pkg.search.study" in train_violations(g, "pkg")


def test_type_checking_imports_do_not_count(tmp_path: Path) -> None:
    g = _plant(tmp_path, {"train/config.py": "from typing import TYPE_CHECKING\n"
                          "if TYPE_CHECKING:\n    import optuna\n"})
    assert train_violations(g, "pkg") == []


def test_planted_cli_import_below_the_cli_is_caught(tmp_path: Path) -> None:
    g = _plant(tmp_path, {"search/launch.py": "from pkg.cli import _common\n",
                          "cli/_common.py": ""})
    assert cli_violations(g, "pkg") == ["pkg.search.launch -> pkg.cli._common"]


def test_planted_cycle_is_caught(tmp_path: Path) -> None:
    g = _plant(tmp_path, {"search/space.py": "def __getattr__(n):\n"
                          "    from pkg.search.space_default import X\n",
                          "search/space_default.py": "from pkg.search.space import Param\n"})
    assert cycles(g) == [["pkg.search.space", "pkg.search.space_default"]]


def test_relative_imports_resolve(tmp_path: Path) -> None:
    g = _plant(tmp_path, {"train/a.py": "from . import b\nfrom ..search import c\n",
                          "train/b.py": "", "search/c.py": ""})
    assert g["pkg.train.a"] >= {"pkg.train.b", "pkg.search.c"}
