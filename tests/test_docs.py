"""What the docs point at exists: the tests named in docs/known-problems.md, the doc links, the
modules docs/architecture.md names, and every module is named there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test_")}


def test_every_test_named_in_known_problems_exists() -> None:
    text = (ROOT / "docs" / "known-problems.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", text)
    assert len(named) >= 20
    missing = [f"{f}::{t}" for f, t in named
               if not (ROOT / "tests" / f).exists()
               or t not in _test_names(ROOT / "tests" / f)]
    assert not missing, f"docs/known-problems.md names tests that do not exist: {missing}"


def test_relative_links_in_the_docs_resolve() -> None:
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"


def _architecture_modules() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    return set(re.findall(r"`((?:train|search|cli|report)/[\w/]*?(?:\.py|/))`", text))


def test_every_module_the_architecture_names_exists() -> None:
    named = _architecture_modules()
    assert len(named) >= 40
    missing = sorted(m for m in named if not (ROOT / "cifar_search" / m).exists())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_every_train_and_search_module_is_in_the_architecture() -> None:
    named = _architecture_modules()
    modules = {f"{p.parent.name}/{p.name}" for sub in ("train", "search")
               for p in (ROOT / "cifar_search" / sub).glob("*.py") if p.name != "__init__.py"}
    missing = sorted(m for m in modules if m not in named)
    assert not missing, f"docs/architecture.md does not describe {missing}"
