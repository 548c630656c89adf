"""Tests of cifar_search.report and `cifar-search report`: real SQLite studies, no mocks."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial

from cifar_search.errors import StudyError
from cifar_search.report import build_report

FAMILIES = ("resnet9", "resnet", "vgg", "plain_cnn")
CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
]  # fmt: skip
SECTIONS = ("summary", "history", "importances", "parallel", "curves", "top", "retrain")


def _params(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """A point of a small conditional space shaped like the real one (gate + conditional)."""
    params: dict[str, Any] = {
        "family": rng.choice(FAMILIES),
        "width": rng.choice([32, 64, 128]),
        "lr": 10 ** rng.uniform(-3, 0),
        "weight_decay": 10 ** rng.uniform(-5, -2),
        "use_cutout": rng.random() < 0.5,
    }
    dists: dict[str, Any] = {
        "family": CategoricalDistribution(FAMILIES),
        "width": CategoricalDistribution([32, 64, 128]),
        "lr": FloatDistribution(1e-3, 1.0, log=True),
        "weight_decay": FloatDistribution(1e-5, 1e-2, log=True),
        "use_cutout": CategoricalDistribution([False, True]),
    }
    if params["use_cutout"]:
        params["cutout"] = rng.randint(4, 16)
        dists["cutout"] = IntDistribution(4, 16)
    if params["family"] == "resnet":
        params["depth_resnet"] = rng.choice(["1-1-1-1", "2-2-2-2"])
        dists["depth_resnet"] = CategoricalDistribution(["1-1-1-1", "2-2-2-2"])
    return params, dists


def _trial(number: int, rng: random.Random, epochs: int, multi: bool) -> Any:
    params, dists = _params(rng)
    roll = rng.random()
    state = (
        TrialState.COMPLETE if roll < 0.6 else TrialState.PRUNED if roll < 0.9 else TrialState.FAIL
    )
    n_epochs = epochs if state == TrialState.COMPLETE else rng.randint(1, epochs - 1)
    ceiling = 0.6 + 0.35 * rng.random()
    accs = [ceiling * (1 - math.exp(-(e + 1) / 4)) for e in range(n_epochs)]
    curve = [
        {
            "epoch": e + 1,
            "train_loss": 2.0 - a,
            "train_acc": a + 0.02,
            "val_loss": 2.1 - a,
            "val_acc": a,
            "lr": 0.1,
            "seconds": 3.0,
            "images_per_s": 15000.0,
        }
        for e, a in enumerate(accs)
    ]
    end = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(
        state, rng.choice(["diverged", "oom", "error"])
    )
    n_params = rng.randint(100_000, 20_000_000)
    attrs: dict[str, Any] = {
        "config": {"model": {"family": params["family"]}, "epochs": epochs},
        "seed": number,
        "n_params": n_params,
        "flops": 30 * n_params,
        "curve": curve,
        "train_seconds": 3.0 * n_epochs,
        "images_per_s": 15000.0,
        "epochs_run": n_epochs,
        "device": "cpu",
        "versions": {"torch": "x"},
        "end": end,
        "end_epoch": n_epochs,
    }
    if end in ("diverged", "oom", "error"):
        attrs["error"] = f"{end} at epoch {n_epochs}"
    values: dict[str, Any] = {}
    if state == TrialState.COMPLETE:
        values = {"values": [accs[-1], float(n_params)]} if multi else {"value": accs[-1]}
    return create_trial(
        state=state,
        params=params,
        distributions=dists,
        user_attrs=attrs,
        intermediate_values=None if multi else {e + 1: a for e, a in enumerate(accs)},
        **values,
    )


def make_study(
    storage: str | optuna.storages.BaseStorage,
    name: str,
    n_trials: int,
    *,
    multi: bool = False,
    epochs: int = 12,
    seed: int = 0,
    trial_retrain: dict[str, Any] | None = None,
) -> optuna.Study:
    """A study of ``n_trials`` synthetic trials (complete, pruned and failed).

    ``trial_retrain`` becomes the ``retrain`` user attribute of the best complete trial (the
    older form of a retrain record; a finished trial cannot be changed afterwards).
    """
    directions: list[Any] = ["maximize", "minimize"] if multi else ["maximize"]
    study = optuna.create_study(storage=storage, study_name=name, directions=directions)
    if multi:
        study.set_user_attr("objectives", ["accuracy", "params"])
    rng = random.Random(seed)
    trials = [_trial(i, rng, epochs, multi) for i in range(n_trials)]
    if trial_retrain is not None:
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        max(done, key=lambda t: t.values[0]).user_attrs["retrain"] = trial_retrain
    study.add_trials(trials)
    return study


def write_run(folder: Path, *, seeds: int = 2, n_wrong: int = 12, seed: int = 0) -> Path:
    """A retrain run folder in the real format: metrics.json and misclassified.npz."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    epochs = [
        {
            "epoch": e,
            "train_loss": 2 / e,
            "train_acc": 1 - 0.5 / e,
            "val_loss": 2.2 / e,
            "val_acc": 1 - 0.6 / e,
            "lr": 0.1 * (1 - e / 11),
            "seconds": 4.0,
            "images_per_s": 1e4,
        }
        for e in range(1, 11)
    ]
    confusion = rng.integers(0, 20, size=(10, 10)) + np.diag(rng.integers(800, 950, size=10))
    test_acc = [0.93 + 0.002 * i for i in range(seeds)]
    metrics = {
        "config": {"model": {"family": "resnet9"}, "epochs": 10, "tta": "flip_translate"},
        "epochs": epochs,
        "test_acc": test_acc,
        "test_acc_mean": float(np.mean(test_acc)),
        "test_acc_std": float(np.std(test_acc)),
        "test_acc_single_mean": 0.9177,  # one view per image, no test-time augmentation
        "per_class_acc": (np.diag(confusion) / confusion.sum(axis=1)).tolist(),
        "confusion_matrix": confusion.tolist(),
        "classes": CLASSES,
        "wall_seconds": 123.4,
        "device": "cpu",
        "versions": {"torch": "2.x"},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    true = rng.integers(0, 10, size=n_wrong)
    np.savez(
        folder / "misclassified.npz",
        images=rng.integers(0, 256, size=(n_wrong, 32, 32, 3), dtype=np.uint8),
        true=true,
        pred=(true + 1) % 10,
    )
    return folder


def plots(html: str) -> tuple[int, int]:
    """(figure divs in the page, figures the page says it expects)."""
    expected = re.search(r'data-plots-expected="(\d+)"', html)
    assert expected is not None
    return html.count('class="plotly-graph-div"'), int(expected.group(1))


def traces(html: str) -> list[dict[str, Any]]:
    """Every trace of every figure in ``html`` (the data arrays passed to Plotly.newPlot)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', html):
        data, _ = decoder.raw_decode(html, match.end())
        found += data
    return found


def section(html: str, key: str) -> str:
    """The HTML of one section."""
    match = re.search(rf'<section id="{key}">(.*?)</section>', html, re.S)
    assert match is not None, f"section {key!r} missing"
    return match.group(1)


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def mixed(url: str, tmp_path: Path) -> tuple[optuna.Study, Path]:
    """30 trials (complete, pruned, failed); the best one retrained; a second run folder.

    The retrain record is where `cifar-search retrain` puts it: study attr ``retrain:<number>``.
    """
    study = make_study(url, "mixed", 30, seed=1)
    states = {t.state for t in study.trials}
    assert {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL} <= states
    runs = tmp_path / "runs"
    run = write_run(runs / "best", seeds=3)
    write_run(runs / "extra" / "seed-run", seeds=1, seed=1)
    metrics = json.loads((run / "metrics.json").read_text())
    record = {key: metrics[key] for key in ("test_acc", "test_acc_mean", "test_acc_std")}
    record |= {"seeds": [0, 1, 2], "run_dir": str(run), "epochs": 10, "wall_seconds": 123.4}
    study.set_user_attr(f"retrain:{study.best_trial.number}", record)
    return study, runs


def test_every_section_for_pruned_failed_and_complete(
    mixed: tuple[optuna.Study, Path], url: str, tmp_path: Path
) -> None:
    study, runs = mixed
    out = build_report(url, "mixed", tmp_path / "out" / "report.html", runs_dir=runs)
    html = out.read_text()
    for key in SECTIONS:
        section(html, key)
    assert 'id="pareto"' not in html  # single objective
    assert "could not be built" not in html
    # One inlined plotly.js, nothing fetched from the network.
    assert html.count("* plotly.js v") == 1
    assert not re.search(r"<script[^>]+src=", html)
    assert plots(html)[0] == plots(html)[1] >= 7
    # Summary: counts by state and by end, best value.
    summary = section(html, "summary")
    counts = {s.name: sum(t.state == s for t in study.trials) for s in TrialState}
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        assert re.search(rf"<td>{state}</td>\s*<td>{counts[state]}</td>", summary)
    for end in ("complete", "pruned"):
        assert f"<td>{end}</td>" in summary
    assert f"{study.best_value:.4g}" in summary
    # Curves: one trace per state group, pruned and failed ones marked; failed ones listed.
    curves = section(html, "curves")
    assert "pruned: last epoch" in curves and "failed: last epoch" in curves
    names = sorted(t["name"].split(" (")[0] for t in traces(curves))
    assert names == sorted(
        [
            "complete",
            "pruned",
            "pruned: last epoch",
            "failed",
            "failed: last epoch",
            f"best: trial {study.best_trial.number}",
        ]
    )
    for t in study.trials:
        if t.state == TrialState.FAIL:
            assert f"<td>{t.number}</td>" in curves
    # Top trials: the contract's columns.
    top = section(html, "top")
    for column in (
        "number",
        "state",
        "end",
        "family",
        "n_params",
        "flops",
        "epochs_run",
        "train_seconds",
        "lr",
    ):
        assert f"<th>{column}</th>" in top
    assert f"<td>{study.best_trial.number}</td>" in top
    # Retrain: both runs, the linked trial, curves, confusion matrix, per-class, images.
    retrain = section(html, "retrain")
    assert f"best (trial {study.best_trial.number})" in retrain and "seed-run" in retrain
    assert "confusion matrix" in retrain and "per-class accuracy" in retrain
    assert retrain.count("data:image/png;base64,") == 24
    assert "automobile" in retrain
    assert "0.932" in retrain  # test accuracy mean over the 3 seeds
    assert "<td>0.9177</td>" in retrain and "<td>flip_translate</td>" in retrain


def test_multi_objective_has_pareto_front(url: str, tmp_path: Path) -> None:
    make_study(url, "pareto", 25, multi=True, seed=2)
    html = build_report(url, "pareto", tmp_path / "r.html").read_text()
    for key in (*SECTIONS, "pareto"):
        section(html, key)
    assert "could not be built" not in html
    pareto = section(html, "pareto")
    assert "Pareto front (" in pareto and "accuracy: maximize, params: minimize" in pareto
    assert '"type":"log"' in pareto  # params on a log axis
    # No intermediate values in multi-objective studies: curves come from the curve attribute.
    assert any(t["type"] == "scattergl" for t in traces(section(html, "curves")))
    assert "<th>accuracy</th>" in section(html, "top") and "Pareto-optimal" in html
    assert plots(html)[0] == plots(html)[1]


def test_sparse_and_empty_studies_get_notes(url: str, tmp_path: Path) -> None:
    optuna.create_study(storage=url, study_name="empty")
    html = build_report(url, "empty", tmp_path / "e.html", runs_dir=tmp_path / "nope").read_text()
    for key in SECTIONS:
        section(html, key)
    assert plots(html) == (0, 0)
    assert "No complete trial yet" in html and "No retrained model" in html
    assert "could not be built" not in html

    study = optuna.create_study(storage=url, study_name="tiny")
    dist: dict[str, BaseDistribution] = {"x": FloatDistribution(0, 1)}
    study.add_trial(create_trial(value=0.5, params={"x": 0.3}, distributions=dist))
    study.add_trial(create_trial(state=TrialState.RUNNING, params={"x": 0.1}, distributions=dist))
    html = build_report(url, "tiny", tmp_path / "t.html").read_text()
    assert "need at least 8 complete trials" in section(html, "importances")
    assert "No trial reported a validation accuracy" in section(html, "curves")
    assert "No failed trials" in section(html, "curves")
    assert "could not be built" not in html


def test_single_param_skips_importances(url: str, tmp_path: Path) -> None:
    study = optuna.create_study(storage=url, study_name="one", direction="maximize")
    dist: dict[str, BaseDistribution] = {"lr": FloatDistribution(1e-3, 1, log=True)}
    study.add_trials(
        [
            create_trial(
                value=i / 20,
                params={"lr": 10 ** (-i / 7)},
                distributions=dist,
                intermediate_values={1: i / 40, 2: i / 20},
            )
            for i in range(12)
        ]
    )
    html = build_report(url, "one", tmp_path / "r.html").read_text()
    assert "need at least 2 parameters" in section(html, "importances")
    assert "log10 lr" in section(html, "parallel")


def test_broken_runs_become_notes(url: str, tmp_path: Path) -> None:
    attr = {"run_dir": str(tmp_path / "gone"), "test_acc_mean": 0.91, "test_acc_std": 0.01}
    study = make_study(url, "broken", 12, seed=3, trial_retrain=attr)
    study.set_user_attr("retrain:preset:davidnet", {"test_acc_mean": 0.94, "seeds": [0]})
    runs = tmp_path / "runs"
    (runs / "bad-json").mkdir(parents=True)
    (runs / "bad-json" / "metrics.json").write_text("{not json")
    odd = write_run(runs / "odd-images")
    np.savez(odd / "misclassified.npz", images=np.zeros((3, 8, 8), np.float32), true=[1], pred=[2])
    weird = {
        "epochs": [{"epoch": "x", "val_acc": "bad"}, 3],
        "confusion_matrix": [[1, 2], [3]],
        "per_class_acc": "nope",
        "test_acc": "n/a",
        "classes": 7,
    }
    (runs / "weird").mkdir()
    (runs / "weird" / "metrics.json").write_text(json.dumps(weird))
    partial = runs / "partial"
    partial.mkdir()
    (partial / "metrics.json").write_text(json.dumps({"test_acc_mean": 0.9, "epochs": []}))
    html = build_report(url, "broken", tmp_path / "r.html", runs_dir=runs).read_text()
    retrain = section(html, "retrain")
    assert "could not be built" not in html
    assert "Unreadable" in retrain or "unreadable" in retrain
    assert "expected uint8 images" in retrain
    assert "No per-epoch metrics" in retrain and "No confusion matrix" in retrain
    assert "No metrics.json in" in retrain and "0.91" in retrain
    assert "preset davidnet" in retrain and "names no run folder" in retrain


def test_unknown_study_names_it_and_lists_the_others(url: str, tmp_path: Path) -> None:
    optuna.create_study(storage=url, study_name="alpha")
    optuna.create_study(storage=url, study_name="beta")
    with pytest.raises(StudyError, match=r"no study named 'gamma' .*alpha, beta"):
        build_report(url, "gamma", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "missing.db"
    with pytest.raises(StudyError, match=re.escape(str(db))):
        build_report(f"sqlite:///{db}", "cifar", tmp_path / "r.html")
    assert not db.exists()


@pytest.mark.parametrize("bad", ["not a url", "nosuchdialect://x/y", "redis://localhost"])
def test_bad_storage_url(bad: str, tmp_path: Path) -> None:
    with pytest.raises(StudyError, match=re.escape(repr(bad))):
        build_report(bad, "cifar", tmp_path / "r.html")


class CountingStorage(optuna.storages.InMemoryStorage):
    """A real in-memory storage that counts the reads of trials (how ``build_report`` scales)."""

    def __init__(self) -> None:
        super().__init__()
        self.all_reads = 0
        self.one_reads = 0

    def get_all_trials(self, *args: Any, **kwargs: Any) -> list[optuna.trial.FrozenTrial]:
        self.all_reads += 1
        return super().get_all_trials(*args, **kwargs)

    def get_trial(self, trial_id: int) -> optuna.trial.FrozenTrial:
        self.one_reads += 1
        return super().get_trial(trial_id)


def test_3000_trials_are_read_as_often_as_30_and_drawn_as_few_traces(tmp_path: Path) -> None:
    """Thousands of trials: the same few reads of them all as for a small study (the page's
    own and Optuna's importance evaluator's), none trial by trial, a trace per state group.
    (Its wall time is a benchmark, bench/bench_report.py, not a test: a timed test fails on a
    loaded machine.)"""
    reads: list[tuple[int, int]] = []
    for n in (30, 3000):
        storage = CountingStorage()
        make_study(storage, "big", n, epochs=20, seed=4)
        storage.all_reads = storage.one_reads = 0
        html = build_report(storage, "big", tmp_path / f"big{n}.html").read_text()
        reads.append((storage.all_reads, storage.one_reads))
    assert reads[0] == reads[1] and reads[1][1] == 0 and reads[1][0] <= 3
    assert len(traces(section(html, "curves"))) <= 6  # one per state group, not one per trial
    assert len(traces(html)) < 20
    assert "could not be built" not in html
    assert "3000 trials" in html


def test_history_subsamples_past_5000_points(tmp_path: Path) -> None:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="huge", direction="maximize")
    dist: dict[str, BaseDistribution] = {"x": FloatDistribution(0, 1)}
    rng = random.Random(5)
    study.add_trials(
        [
            create_trial(value=rng.random(), params={"x": rng.random()}, distributions=dist)
            for _ in range(6000)
        ]
    )
    history = section(build_report(storage, "huge", tmp_path / "h.html").read_text(), "history")
    assert re.search(r"Showing \d+ of 6000 complete trials \(subsampled\)", history)


# --- `cifar-search report`, end to end through the real entry point --------------------------


def test_cli_report_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cifar_search.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    study = make_study("sqlite:///studies/cifar.db", "cifar", 15, seed=6)
    write_run(tmp_path / "runs" / "cifar" / f"trial-{study.best_trial.number}")
    assert main(["report"]) == 0
    out = tmp_path / "studies" / "cifar-report.html"
    assert str(Path("studies") / "cifar-report.html") in capsys.readouterr().out
    html = out.read_text()
    assert "confusion matrix" in section(html, "retrain")  # runs/<study> is the default


def test_cli_report_options(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cifar_search.cli.main import main

    make_study(url, "named", 10, seed=7)
    write_run(tmp_path / "elsewhere" / "r1")
    out = tmp_path / "deep" / "named-report.html"
    argv = [
        "report",
        "--study",
        "named",
        "--storage",
        url,
        "--out",
        str(out.parent),
        "--runs",
        str(tmp_path / "elsewhere"),
    ]
    assert main(argv) == 0
    assert str(out) in capsys.readouterr().out
    assert "r1" in section(out.read_text(), "retrain")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--study", "nope", "--storage", "sqlite:///studies/cifar.db"], "no study named 'nope'"),
        (["--study", "nope"], "studies/nope.db"),
        (["--storage", "nosuchdialect://x/y"], "nosuchdialect://x/y"),
        (["--storage", "sqlite:///missing/x.db"], "x.db"),
    ],
)
def test_cli_report_errors_are_one_line(
    args: list[str],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cifar_search.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    optuna.create_study(storage="sqlite:///studies/cifar.db", study_name="cifar")
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cifar-search report: error:")
    assert expected in err
    assert "studies there: cifar" in err or "no study named" not in expected
    assert not (tmp_path / "studies" / "nope.db").exists()
    assert not (tmp_path / "missing").exists()
    assert not list((tmp_path / "studies").glob("*.html"))


def test_a_truncated_misclassified_file_is_a_note(tmp_path: Path) -> None:
    from cifar_search.report._images import misclassified_grid

    path = tmp_path / "misclassified.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(path, images=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
                        true=np.arange(20) % 10, pred=(np.arange(20) + 1) % 10)
    whole = path.read_bytes()
    assert "data:image/png;base64," in misclassified_grid(path, CLASSES)
    for cut in (10, len(whole) // 2, len(whole) - 30):  # what a killed writer could leave
        path.write_bytes(whole[:cut])
        assert "truncated or corrupt?" in misclassified_grid(path, CLASSES)
