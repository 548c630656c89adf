"""Every check before anything is created: a refused input leaves no study file behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cifar_search.cli.main import main
from cifar_search.errors import ConfigError, DataError
from cifar_search.search.launch import SearchSettings, open_search


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_missing_data_offline_creates_no_study(tmp_path: Path, tiny_space: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    missing = tmp_path / "nowhere" / "cifar10.npz"
    code = main(["run", "--budget", "smoke", "--space", str(tiny_space), "--data", str(missing),
                 "--device", "cpu", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CIFAR-10 not found" in err and str(missing) in err
    assert _files(tmp_path) == before  # no studies/, no .db, no artifacts/
    assert not (tmp_path / "studies").exists()


def test_missing_data_creates_no_study_in_a_given_storage(tmp_path: Path,
                                                          tiny_space: Path) -> None:
    s = SearchSettings(study="t", storage=f"sqlite:///{tmp_path}/t.db", budget="smoke",
                       space=tiny_space, data=tmp_path / "cifar10.npz", device="cpu")
    with pytest.raises(DataError, match="no such file"):
        open_search(s)
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize("study", ["", "../../../tmp/x", "a/b", ".."])
def test_unsafe_study_name_is_refused_before_anything(tmp_path: Path, synthetic_npz: Path,
                                                      tiny_space: Path, study: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code = main(["run", "--study", study, "--budget", "smoke", "--space", str(tiny_space),
                 "--data", str(synthetic_npz), "--device", "cpu", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"study name {study!r} is not allowed" in err
    assert os.listdir(work) == []
    assert sorted(os.listdir(tmp_path)) == sorted(["work", "cifar10.npz", "tiny.toml"])


def test_train_subset_beyond_the_split_names_the_split_size(tmp_path: Path,
                                                            synthetic_npz: Path,
                                                            tiny_space: Path) -> None:
    s = SearchSettings(study="t", storage=f"sqlite:///{tmp_path}/t.db", budget="smoke",
                       space=tiny_space, data=synthetic_npz, device="cpu", train_subset=9999999)
    # 2000 generated training images, 200 of them held out for validation
    with pytest.raises(ConfigError, match=r"--train-subset 9999999 exceeds .*: 1,800 images"):
        open_search(s)
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize("field", ["max_params", "max_flops"])
def test_non_positive_limits_are_refused(tmp_path: Path, synthetic_npz: Path,
                                         tiny_space: Path, field: str) -> None:
    s = SearchSettings(study="t", storage=f"sqlite:///{tmp_path}/t.db", budget="smoke",
                       space=tiny_space, data=synthetic_npz, device="cpu", **{field: -1.0})
    with pytest.raises(ConfigError, match=r"must be > 0, but got -1.0"):
        open_search(s)
    assert not (tmp_path / "t.db").exists()
