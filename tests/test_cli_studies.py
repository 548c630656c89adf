"""`cifar-search studies` and `delete-study` on real SQLite studies in a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from cifar_search.cli.main import main
from cifar_search.search.storage import open_storage


def make(folder: Path, name: str, values: list[float]) -> str:
    url = f"sqlite:///{folder / name}.db"
    study = optuna.create_study(study_name=name, storage=open_storage(url),
                                direction="maximize")
    for v in values:
        study.add_trial(optuna.trial.create_trial(value=v))
    return url


def test_studies_lists_every_file_with_counts_and_best(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make(tmp_path, "alpha", [0.5, 0.934])
    make(tmp_path, "beta", [])
    assert main(["studies", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "93.40%" in out and "beta" in out
    assert main(["studies", "--dir", str(tmp_path), "--json"]) == 0
    rows = {r["study"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["alpha"]["trials"] == 2 and rows["alpha"]["best_value"] == pytest.approx(0.934)
    assert rows["beta"]["best_value"] is None
    assert main(["studies", "--dir", str(tmp_path / "none")]) == 2
    assert "no studies folder" in capsys.readouterr().err


def test_delete_study_asks_and_yes_deletes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    url = make(tmp_path, "gone", [0.1])
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["delete-study", "gone", "--storage", url]) == 2  # no terminal, no --yes
    assert "--yes" in capsys.readouterr().err
    assert optuna.get_all_study_names(url) == ["gone"]
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(["delete-study", "gone", "--storage", url]) == 1  # answered no
    assert optuna.get_all_study_names(url) == ["gone"]
    assert main(["delete-study", "nope", "--storage", url, "--yes"]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err
    assert main(["delete-study", "gone", "--storage", url, "--yes"]) == 0
    assert "deleted study 'gone' (1 trials)" in capsys.readouterr().out
    assert optuna.get_all_study_names(url) == []
