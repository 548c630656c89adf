"""The Python API runs the CLI's code paths: a search, a retrain of its best trial, the model
folder loaded back and used, on a generated data set; its names survive the package layout."""

from __future__ import annotations

from pathlib import Path

import torch

import cifar_search


def test_run_retrain_load_model(tmp_path: Path, synthetic_npz: Path) -> None:
    url = f"sqlite:///{tmp_path}/nb.db"
    study = cifar_search.run(study="nb", storage=url, trials=2, budget="smoke",
                             space="tiny", data=synthetic_npz, device="cpu", presets=())
    assert len(study.trials) == 2 and study.best_trial.value is not None
    result = cifar_search.retrain("best", study="nb", storage=url, epochs=1, data=synthetic_npz,
                                  device="cpu", out=tmp_path / "model", export=False)
    assert 0.0 <= result.test_acc_mean <= 1.0 and result.run_dir == tmp_path / "model"
    model, config, metrics = cifar_search.load_model(result.run_dir)
    assert config.model.family == "plain_cnn" and metrics["test_acc"] == result.test_acc
    with torch.no_grad():
        assert model(torch.rand(3, 3, 32, 32)).shape == (3, 10)


def test_the_api_names_are_the_functions_after_the_subpackages_load() -> None:
    import cifar_search.search.auto
    import cifar_search.search.retrain  # submodules of these names must not shadow the API

    for name in ("run", "retrain", "auto", "load_model"):
        assert callable(getattr(cifar_search, name)), name
    assert cifar_search.retrain is cifar_search.api.retrain
