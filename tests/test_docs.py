"""What the docs point at exists: the tests named in docs/known-problems.md, the doc links."""

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
