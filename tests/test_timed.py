"""One training inside a wall-clock budget: ``timed.pace`` (the arithmetic), ``timed.within``
and ``retrain --time`` on a generated data set.

The speed is planted (``rates=``, or a throughput-cache entry for the CLI), so what is planned
does not depend on how fast this machine is; the tiny config then trains for real, paced.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from datagen import write_npz
from test_retrain import STUDY, make_small_study

from cifar_search import api
from cifar_search.cli.main import main
from cifar_search.errors import ConfigError
from cifar_search.search import auto_plan
from cifar_search.search.retrain import RetrainSettings, RetrainTarget, resolve_target, retrain
from cifar_search.search.timed import pace, within
from cifar_search.train.config import ModelConfig, TrainConfig
from cifar_search.train.runtime import resolve_runtime
from cifar_search.train.throughput import Rate, RateCache

TINY = TrainConfig(model=ModelConfig(family="plain_cnn", width=8, depth=(1, 1, 1)),
                   batch_size=128, epochs=3, tta="flip")
RATE = Rate(train=2000.0, eval=5000.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "cifar10.npz", 2000, 500, seed=0)


def test_pace_fills_the_share_left_after_the_test_passes_and_exports() -> None:
    before = time.monotonic()
    p = pace(TINY, RATE, 290.0, 300.0, device="cpu", train_images=50_000, test_images=10_000)
    after = time.monotonic()
    share = auto_plan.final_share(290.0, 300.0, "cpu", 10_000, RATE.eval, "flip")
    assert p.seconds == pytest.approx(share)
    assert (p.config.epochs, p.epoch_images) == auto_plan.fill(share, RATE, 50_000, 128)
    assert before + share <= p.deadline <= after + share
    # the plan's images fill the share to within a batch an epoch
    assert p.epoch_images is not None
    planned = p.config.epochs * p.epoch_images / RATE.train
    assert share - p.config.epochs * 128 / RATE.train <= planned <= share
    unexported = pace(TINY, RATE, 290.0, 300.0, device="cpu", train_images=50_000,
                      test_images=10_000, export=False)
    assert unexported.seconds == pytest.approx(share + 2 * auto_plan.EXPORT_SECONDS["cpu"])


def test_pace_with_seeds_gives_each_an_equal_share_after_the_earlier_seeds_test_passes(
) -> None:
    before = time.monotonic()
    p = pace(TINY, RATE, 290.0, 300.0, device="cpu", train_images=50_000, test_images=10_000,
             seeds=3)
    after = time.monotonic()
    share = auto_plan.final_share(290.0, 300.0, "cpu", 10_000, RATE.eval, "flip")
    test_s = auto_plan.test_seconds(10_000, RATE.eval, "flip")
    assert test_s == pytest.approx(10_000 * 3 / RATE.eval)  # flip: two views, and one view
    assert p.seeds == 3 and p.test_seconds == pytest.approx(test_s)
    assert p.seconds == pytest.approx((share - 2 * test_s) / 3)
    assert (p.config.epochs, p.epoch_images) == auto_plan.fill(p.seconds, RATE, 50_000, 128)
    # the deadline is the end of the last seed's training: three trainings, two test passes
    assert before + share - 2 * test_s <= p.deadline <= after + share - 2 * test_s
    assert "each of 3 seeds gets" in p.source("--time 300 s")


def test_each_seed_left_to_train_gets_an_equal_share_of_the_time_left() -> None:
    from cifar_search.search.retrain import _seed_deadline

    now = time.monotonic()
    s = RetrainSettings(seeds=3, deadline=now + 100.0, test_seconds=10.0)
    assert _seed_deadline(s, 3) == pytest.approx(now + 80.0 / 3, abs=0.5)
    assert _seed_deadline(s, 1) == pytest.approx(now + 100.0, abs=0.5)  # the last seed
    assert _seed_deadline(RetrainSettings(seeds=3), 3) is None  # not paced


def test_pace_with_no_time_left_plans_one_batch_due_now() -> None:
    p = pace(TINY, RATE, 5.0, 300.0, device="cpu", train_images=50_000, test_images=10_000)
    assert p.seconds < 0 and p.config.epochs == 1 and p.epoch_images == 128
    assert p.deadline <= time.monotonic()


def test_within_plans_the_epochs_and_retrain_ends_paced(data: Path, tmp_path: Path) -> None:
    target = RetrainTarget("tiny", "test", TINY, "test")
    settings = RetrainSettings(out=tmp_path / "r", data=data, device="cpu", precision="fp32",
                               export=False)
    timed = within(target, settings, 8.0, rates=lambda cfg: RATE)
    assert timed.rate == RATE and not timed.measured and len(timed.arrays.train_y) == 2000
    assert timed.settings.deadline == timed.paced.deadline
    assert timed.settings.epoch_images == timed.paced.epoch_images
    epochs = timed.target.config.epochs
    assert epochs == timed.paced.config.epochs > TINY.epochs  # 8 s hold more than 3 epochs
    assert timed.target.epochs_source.startswith("--time 8 s: the epochs that fill the ")
    assert "paced" in timed.describe(8.0, 1.0)
    result = retrain(timed.target, timed.settings, arrays=timed.arrays)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["data"]["paced"] is True and result.epochs == epochs
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, epochs + 1))
    assert metrics["epoch_budget_source"] == timed.target.epochs_source


def test_within_refuses_what_it_cannot_pace(data: Path, tmp_path: Path) -> None:
    target = RetrainTarget("tiny", "test", TINY, "test")
    settings = RetrainSettings(out=tmp_path / "r", data=data, device="cpu", export=False)
    with pytest.raises(ConfigError, match="must be > 0"):
        within(target, settings, 0.0, rates=lambda cfg: RATE)
    slow = Rate(train=2000.0, eval=10.0)  # the two test passes alone take 150 s
    with pytest.raises(ConfigError, match="--time 60 s leaves no time to train"):
        within(target, settings, 60.0, rates=lambda cfg: slow)
    assert not (tmp_path / "r").exists()  # nothing written


def test_api_retrain_with_a_time(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        api.retrain(preset="rdfia-alexnet", epochs=2, time="1m", data=data, device="cpu")


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory, data: Path) -> str:
    return make_small_study(tmp_path_factory.mktemp("study"), data)


def _retrain_best_in_8s(storage: str, data: Path, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch, *extra: str) -> Path:
    """`retrain best --time 8s` with the best trial's speed planted in this device's
    throughput cache and T counted from the call; the run folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("cifar_search.cli.retrain.process_age", lambda: 0.0)
    cfg = resolve_target("best", study=STUDY, storage=storage, epochs=1).config
    RateCache().put(cfg, resolve_runtime("cpu", "fp32"), RATE)
    out = tmp_path / "run"
    assert main(["retrain", "best", "--study", STUDY, "--storage", storage, "--data", str(data),
                 "--device", "cpu", "--precision", "fp32", "--time", "8s", "--out", str(out),
                 "--no-export", "--no-progress", *extra]) == 0
    return out


def test_cli_retrain_time_fills_it_from_the_cached_speed(
        storage: str, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The best trial's speed planted in this device's throughput cache: nothing is measured,
    and T counts from the command's start (here: the call, not the test process's start)."""
    out = _retrain_best_in_8s(storage, data, tmp_path, monkeypatch)
    text = capsys.readouterr().out
    assert "--time 8 s: cached 2,000 training images/s here: " in text
    assert "s of the 8 s budget spent" in text and "test accuracy" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["paced"] is True
    assert metrics["epoch_budget_source"].startswith("--time 8 s: the epochs that fill ")
    assert len(metrics["epochs"]) == metrics["epoch_budget"] > 1


def test_cli_retrain_time_with_seeds_trains_each_paced_inside_t(
        storage: str, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = _retrain_best_in_8s(storage, data, tmp_path, monkeypatch, "--seeds", "2")
    text = capsys.readouterr().out
    assert "2 seeds one after the other, each " in text and " ± " in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1] and metrics["data"]["paced"] is True
    assert "each of 2 seeds gets" in metrics["epoch_budget_source"]
    assert len(metrics["curves"]["1"]) == len(metrics["curves"]["0"]) == metrics["epoch_budget"]
    assert (out / "seed-1" / "metrics.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--time", "1m", "--epochs", "3"], "give --epochs or --time, not both"),
        (["--time", "0"], "--time must be > 0"),
        (["--time", "soon"], "--time must be a duration like 600, 90s, 10m"),
    ],
)
def test_cli_retrain_time_errors_are_one_line_exit_2(
        data: Path, tmp_path: Path, args: list[str], message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["retrain", "--preset", "rdfia-alexnet", *args, "--data", str(data),
                 "--device", "cpu", "--out", str(tmp_path / "m"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert err.startswith("cifar-search retrain: error:") and err.count("\n") == 1
    assert not (tmp_path / "m").exists()
