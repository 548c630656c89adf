"""One self-contained, offline HTML page about a study: what was searched, what won, and how the
retrained winners behave on the test set.

Example:
    >>> from pathlib import Path
    >>> from cifar_search.report import build_report
    >>> build_report("sqlite:///studies/cifar.db", "cifar", Path("studies/cifar-report.html"))
    ... # doctest: +SKIP
"""

from __future__ import annotations

from cifar_search.report._build import build_report

__all__ = ["build_report"]
