"""The HTML page: one self-contained file, plotly.js inlined once, no network access.

Every figure's ``Plotly.newPlot`` promise calls ``window.__plotRendered``, which counts rendered
plots in ``<body data-plots-rendered>``; ``<body data-plots-expected>`` holds how many there are.
Script errors, unhandled promise rejections and ``console.error`` calls are collected in
``<html data-js-errors>`` (a JSON list). A browser test reads both from the rendered DOM.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

TEMPLATE = "plotly_white"
PLOT_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}

_HOOKS_JS = """
(function () {
  var root = document.documentElement;
  var errors = [];
  function record(message) {
    errors.push(String(message));
    root.setAttribute("data-js-errors", JSON.stringify(errors));
  }
  window.addEventListener("error", function (e) {
    record((e && e.message) || "error event");
  });
  window.addEventListener("unhandledrejection", function (e) {
    var r = e && e.reason;
    record("unhandled rejection: " + ((r && r.message) || r));
  });
  var consoleError = console.error;
  console.error = function () {
    record("console.error: " + Array.prototype.join.call(arguments, " "));
    return consoleError.apply(console, arguments);
  };
  window.__plotRendered = function () {
    var n = Number(document.body.getAttribute("data-plots-rendered") || 0) + 1;
    document.body.setAttribute("data-plots-rendered", String(n));
  };
})();
"""

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1f2430; background: #f6f7f9; }
header { background: #1f2a44; color: #fff; padding: 18px 32px; }
header h1 { margin: 0; font-size: 22px; } header p { margin: 4px 0 0; opacity: .8; }
nav { padding: 8px 32px; background: #e8ebf1; font-size: 14px; }
nav a { margin-right: 14px; color: #1f2a44; }
main { padding: 8px 32px 40px; max-width: 1500px; }
section { background: #fff; border-radius: 8px; padding: 12px 20px 16px; margin: 16px 0;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }
h2 { font-size: 18px; margin: 4px 0 10px; } h3 { font-size: 15px; margin: 14px 0 6px; }
.note { color: #6b7080; font-style: italic; margin: 6px 0; }
table.data { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
table.data th, table.data td { border-bottom: 1px solid #e3e5ea; padding: 3px 9px;
                               text-align: right; white-space: nowrap; }
table.data th { background: #f0f2f6; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
details { margin: 8px 0; } summary { cursor: pointer; }
.card { background: #f0f2f6; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; }
.grid { display: flex; flex-wrap: wrap; gap: 6px; }
.grid figure { margin: 0; width: 80px; text-align: center; font-size: 10px; }
.grid img { width: 64px; height: 64px; image-rendering: pixelated; }
.wrong { color: #c0392b; }
"""


def esc(value: object) -> str:
    """HTML-escape any value's ``str``."""
    return html.escape(str(value))


def note(text: str) -> str:
    """A short note standing in for a section (or part) whose data is absent."""
    return f'<p class="note">{esc(text)}</p>'


@dataclass
class Section:
    """One titled block of the page; ``body`` is HTML."""

    key: str
    title: str
    body: str


@dataclass
class FigureRenderer:
    """Turns plotly figures into ``<div>``s that share the one inlined plotly.js.

    Attributes:
        count: Figures rendered so far (the number the page expects to see drawn).
    """

    count: int = 0
    _ids: set[str] = field(default_factory=set)

    def render(self, fig: go.Figure, height: int = 420) -> str:
        """HTML for ``fig``; plotly.js itself is added once by :func:`page`."""
        self.count += 1
        fig.update_layout(template=TEMPLATE, height=height, margin={"t": 40, "b": 40})
        return str(
            fig.to_html(
                full_html=False,
                include_plotlyjs=False,
                config=PLOT_CONFIG,
                div_id=f"plot-{self.count}",
                post_script="window.__plotRendered && window.__plotRendered('{plot_id}');",
            )
        )


def page(title: str, subtitle: str, sections: list[Section], n_plots: int) -> str:
    """The whole document.

    plotly.js is inlined once in ``<head>`` (the equivalent of ``include_plotlyjs="inline"`` on
    the first figure), so that a section dropped after an error cannot take it away from the rest.
    """
    nav = "".join(f'<a href="#{esc(s.key)}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{esc(s.key)}"><h2>{esc(s.title)}</h2>\n{s.body}\n</section>'
        for s in sections
    )
    return f"""<!DOCTYPE html>
<html lang="en" data-js-errors="[]">
<head>
<meta charset="utf-8">
<title>{esc(title)}</title>
<style>{_CSS}</style>
<script>{_HOOKS_JS}</script>
<script>window.PlotlyConfig = {{MathJaxConfig: "local"}};</script>
<script>{get_plotlyjs()}</script>
</head>
<body data-plots-expected="{n_plots}" data-plots-rendered="0">
<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>
<nav>{nav}</nav>
<main>
{body}
</main>
</body>
</html>
"""
