"""The cpu budget's cost ceiling, derived from measured speed: real studies, a real cache."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest

from cifar_search.cli.main import main
from cifar_search.search import ceiling
from cifar_search.search.budget import BUDGETS
from cifar_search.search.launch import SearchSettings, open_search
from cifar_search.train.models import model_cost
from cifar_search.train.presets import get_preset
from cifar_search.train.runtime import resolve_runtime
from cifar_search.train.throughput import Rate, RateCache

CPU = BUDGETS["cpu"]
FAST94 = get_preset("fast94").config
FAST94_FLOPS = model_cost(FAST94.model)[1]


def _never() -> tuple[Rate, bool]:
    raise AssertionError("measured where nothing should be")


def test_the_ceiling_is_what_a_trial_of_the_budget_affords_at_the_measured_speed() -> None:
    value = ceiling.derive(CPU, Rate(617.0, 2570.0), FAST94_FLOPS, 8000)
    assert value == pytest.approx(617.0 * FAST94_FLOPS * 30.0 / (6 * 8000))
    assert 85e6 < value < 95e6  # the reference CPU: fast94 narrowed, the small presets in
    assert ceiling.derive(CPU, Rate(1234.0, 1.0), FAST94_FLOPS, 8000) == pytest.approx(2 * value)
    assert ceiling.derive(CPU, Rate(617.0, 1.0), FAST94_FLOPS, 4000) == pytest.approx(2 * value)
    with pytest.raises(ValueError, match="'gpu' has no trial_seconds"):
        ceiling.derive(BUDGETS["gpu"], Rate(1.0, 1.0), FAST94_FLOPS, 8000)


@pytest.mark.parametrize(("given", "stored", "budget", "expected", "source"), [
    (5e6, {"ceiling": {"max_flops": 7e6, "source": "x"}}, "cpu", 5e6, "--max-flops"),
    (None, {"ceiling": {"max_flops": 7e6, "source": "x"}}, "cpu", 7e6, "kept: x"),
    (None, {"ceiling": {"max_flops": None, "source": "budget gpu"}}, "cpu", None, "kept"),
    (None, {"budget": {"name": "cpu", "max_flops": 80e6}}, "cpu", 80e6, "kept: the study's"),
    (None, {}, "smoke", 25e6, "budget smoke"),
    (None, {}, "gpu", None, "budget gpu"),
])
def test_a_given_or_stored_ceiling_is_used_without_measuring(
        given: float | None, stored: dict[str, object], budget: str, expected: float | None,
        source: str) -> None:
    got = ceiling.resolve(BUDGETS[budget], given=given, stored=stored, measure=_never,
                          reference="fast94", reference_flops=FAST94_FLOPS, train_images=8000)
    assert got.max_flops == expected and got.source.startswith(source)


def test_a_new_cpu_study_derives_its_ceiling_says_how_and_keeps_it_on_resume(
        tmp_path: Path, synthetic_npz: Path, tiny_space: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    runtime = resolve_runtime("cpu", "auto")
    RateCache().put(FAST94, runtime, Rate(500.0, 2000.0))
    url = f"sqlite:///{tmp_path}/t.db"
    s = SearchSettings(study="t", storage=url, budget="cpu", space=tiny_space,
                       data=synthetic_npz, device="cpu", progress=False, heartbeat=None)
    opened = open_search(s)
    # 2,000 generated training images, 200 held out: a trial sees 1,800 an epoch
    expected = 500.0 * FAST94_FLOPS * 30.0 / (6 * 1800)
    assert opened.constraints.max_flops == pytest.approx(expected)
    header = opened.describe()
    assert f"{expected:,.3g} (a 6 x 1,800-image trial in 30 s at fast94's 500 training " \
           "images/s here (cached))" in header
    stored = optuna.load_study(study_name="t", storage=url).user_attrs["ceiling"]
    assert stored["max_flops"] == pytest.approx(expected)

    RateCache().put(FAST94, runtime, Rate(5000.0, 2000.0))  # a faster figure since: not used
    again = open_search(s)
    assert again.constraints.max_flops == pytest.approx(expected)
    assert "kept: a 6 x 1,800-image trial" in again.describe()
    assert main(["status", "--study", "t", "--storage", url]) == 0
    assert f"cost ceiling: {expected / 1e6:,.1f} MFLOPs/image (a 6 x 1,800" in \
        capsys.readouterr().out

    by_hand = open_search(dataclasses.replace(s, study="u", max_flops=3e6))
    assert by_hand.constraints.max_flops == 3e6 and "(--max-flops)" in by_hand.describe()
    fresh = open_search(dataclasses.replace(s, study="v"))  # a new study reads the new figure
    assert fresh.constraints.max_flops == pytest.approx(10 * expected)


def test_a_cpu_study_made_with_the_fixed_ceiling_resumes_with_it(
        tmp_path: Path, synthetic_npz: Path, tiny_space: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # empty: nothing measured
    url = f"sqlite:///{tmp_path}/t.db"
    old = optuna.create_study(study_name="t", storage=url, direction="maximize")
    old.set_user_attr("objectives", ["accuracy"])
    old.set_user_attr("budget", {"name": "cpu", "epochs": 6, "train_subset": 8000,
                                 "val_size": 5000, "max_flops": 80e6, "min_epochs": 1,
                                 "retrain_epochs": 15, "pruner": "median"})
    s = SearchSettings(study="t", storage=url, budget="cpu", space=tiny_space,
                       data=synthetic_npz, device="cpu", progress=False, heartbeat=None)
    opened = open_search(s)  # no "would mix incomparable trials": the fidelity is the same
    assert opened.constraints.max_flops == 80e6
    assert not (tmp_path / "cache" / "cifar-search" / "throughput.json").exists()
