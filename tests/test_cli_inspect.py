"""`status` and `trials` as a person reads them (percentages, within 100 columns) and as a
script reads them (--json, fractions), on a real SQLite study."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest

from cifar_search.cli.main import main
from cifar_search.search.storage import open_storage


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    study.set_user_attr("objectives", ["accuracy"])
    config = {"model": {"family": "resnet9"}, "batch_size": 512, "optim": {"optimizer": "sgd"}}
    for i, v in enumerate((0.9134, 0.5)):
        study.add_trial(optuna.trial.create_trial(
            value=v, params={"lr": 0.1 * (i + 1)},
            distributions={"lr": optuna.distributions.FloatDistribution(0.01, 1.0)},
            user_attrs={"config": config, "end": "complete", "n_params": 6_573_120,
                        "train_seconds": 12.5}))
    study.add_trial(optuna.trial.create_trial(  # pruned: no training time recorded
        state=optuna.trial.TrialState.PRUNED, value=0.2, params={"lr": 0.5},
        distributions={"lr": optuna.distributions.FloatDistribution(0.01, 1.0)},
        user_attrs={"config": config, "end": "pruned", "n_params": 6_573_120}))
    study.set_user_attr("budget", {"name": "cpu", "epochs": 6, "train_subset": 8000})
    study.set_user_attr("retrain:0", {"test_acc_mean": 0.9351, "test_acc_std": 0.0,
                                      "seeds": [0]})
    return url


def test_status_in_percent_and_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--study", "s", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "val acc 91.34%" in out and "test acc 93.51%" in out
    assert "budget cpu: 6 epochs/trial, 8,000 training images" in out
    assert re.search(r"^time spent in trials: \d+:\d\d:\d\d$", out, re.M)  # no microseconds
    assert max(map(len, out.splitlines())) <= 100
    assert main(["status", "--study", "s", "--storage", url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["best"][0]["values"] == [pytest.approx(0.9134)] and data["trials"] == 3


def test_trials_in_percent_and_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trials", "--study", "s", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "91.34%" in out and "93.51%" in out and "resnet9" in out
    assert "NaN" not in out and "nan" not in out  # what was not measured reads "-"
    assert max(map(len, out.splitlines())) <= 100
    assert main(["trials", "--study", "s", "--storage", url, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["value"] for r in rows] == [pytest.approx(0.9134), pytest.approx(0.5),
                                          pytest.approx(0.2)]
