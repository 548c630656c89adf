"""The HTML report in a real browser: headless Chromium renders every plot with no script error.

The page counts the plots whose ``Plotly.newPlot`` promise resolved in
``<body data-plots-rendered>`` and collects script errors, unhandled rejections and
``console.error`` calls in ``<html data-js-errors>``; Chromium's ``--dump-dom`` shows both after
the scripts ran. The screenshots land in ``tests/artifacts/`` (their paths are printed).

Chromium: Debian's ``chromium`` package. When it is missing, the set-up installs it with
``apt-get install -y chromium`` if running as root with ``CIFAR_SEARCH_BROWSER_TESTS`` or ``CI``
set; otherwise the tests are skipped. ``CIFAR_SEARCH_CHROMIUM`` names another binary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image
from test_report import make_study, write_run

from cifar_search.report import build_report

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in containers
    "--disable-gpu",
    "--enable-unsafe-swiftshader",  # software WebGL for the scattergl / parcoords plots
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1400,3000",
    "--virtual-time-budget=8000",  # ms of page time before the DOM is dumped
    "--enable-logging=stderr",  # console messages, "Uncaught ..." included, go to stderr
    "--v=0",
)


def _find_chromium() -> str | None:
    override = os.environ.get("CIFAR_SEARCH_CHROMIUM")
    if override:
        return shutil.which(override) or override
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _install_chromium() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=900)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of a Chromium binary, installed with apt-get where allowed."""
    path = _find_chromium()
    if path is None:
        allowed = os.environ.get("CIFAR_SEARCH_BROWSER_TESTS") or os.environ.get("CI")
        if not allowed:
            pytest.skip("no chromium; set CIFAR_SEARCH_BROWSER_TESTS=1 (as root) to install it")
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("no chromium, and apt-get install needs root on Debian/Ubuntu")
        _install_chromium()
        path = _find_chromium()
        assert path is not None, "apt-get install -y chromium left no chromium binary"
    return path


def render(chromium: str, page: Path, shot: Path, profile: Path) -> str:
    """Load ``page`` in headless Chromium; save a screenshot; return the DOM after the scripts."""
    cmd = [
        chromium,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--screenshot={shot}",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    uncaught = [line for line in done.stderr.splitlines() if "Uncaught" in line]
    assert not uncaught, f"uncaught JavaScript errors: {uncaught}"
    print(f"screenshot: {shot}")
    return done.stdout


def attribute(dom: str, tag: str, name: str) -> str:
    """The value of attribute ``name`` of the first ``<tag ...>`` in ``dom``."""
    opening = re.search(rf"<{tag}\b[^>]*>", dom)
    assert opening is not None, f"no <{tag}> in the dumped DOM"
    value = re.search(rf'\b{name}="([^"]*)"', opening.group(0))
    assert value is not None, f"<{tag}> has no {name}: {opening.group(0)[:300]}"
    return value.group(1).replace("&quot;", '"').replace("&amp;", "&")


def check_rendered(dom: str, shot: Path) -> int:
    """No script error, every plot drawn (WebGL ones included), a non-blank screenshot."""
    errors = json.loads(attribute(dom, "html", "data-js-errors"))
    assert errors == [], f"JavaScript errors: {errors}"
    expected = int(attribute(dom, "body", "data-plots-expected"))
    rendered = int(attribute(dom, "body", "data-plots-rendered"))
    assert expected > 0 and rendered == expected, f"{rendered} of {expected} plots rendered"
    assert 'class="no-webgl"' not in dom, "plotly found no WebGL"
    assert dom.count('class="main-svg"') >= expected  # plotly's drawing surface, per plot
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (3000, 1400)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500, "screenshot looks blank"
    return rendered


@pytest.fixture
def url(tmp_path: Path) -> str:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return f"sqlite:///{tmp_path / 'study.db'}"


def test_report_renders_in_chromium(chromium: str, url: str, tmp_path: Path) -> None:
    study = make_study(url, "browser", 40, seed=11)
    run = write_run(tmp_path / "runs" / "best", seeds=2)
    study.set_user_attr(
        f"retrain:{study.best_trial.number}",
        {"run_dir": str(run), "test_acc_mean": 0.931, "test_acc_std": 0.001, "seeds": [0, 1]},
    )
    page = build_report(url, "browser", tmp_path / "report.html", runs_dir=tmp_path / "runs")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-single-objective.png"
    dom = render(chromium, page, shot, tmp_path / "profile")
    assert check_rendered(dom, shot) == 6  # history, importances, parallel, curves, run x 2
    assert dom.count("<figcaption>") == 12  # misclassified test images


def test_multi_objective_report_renders_in_chromium(
    chromium: str, url: str, tmp_path: Path
) -> None:
    make_study(url, "pareto", 40, multi=True, seed=12)
    page = build_report(url, "pareto", tmp_path / "report.html")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-multi-objective.png"
    dom = render(chromium, page, shot, tmp_path / "profile")
    assert check_rendered(dom, shot) >= 5
    assert 'id="pareto"' in dom
