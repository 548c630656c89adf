"""`cifar-search env`: the facts a bug report needs, as text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from cifar_search.cli.main import main
from cifar_search.search.storage import open_storage


def test_env_reports_versions_device_data_and_storage(
        tmp_path: Path, synthetic_npz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    assert main(["env", "--json", "--data", str(synthetic_npz), "--storage", url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"torch", "optuna", "python"} <= set(report["versions"])
    assert report["device"]["device"] == "cpu" and report["cuda devices"] == "none"
    assert report["data"] == f"{synthetic_npz.resolve()} (found)"
    assert "no file yet" in report["storage"] and not (tmp_path / "s.db").exists()
    optuna.create_study(study_name="s", storage=open_storage(url))
    assert main(["env", "--data", str(tmp_path / "none.npz"), "--storage", url]) == 0
    out = capsys.readouterr().out
    assert f"{url}: opens" in out and "none.npz (missing" in out
