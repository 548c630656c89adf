"""The plan of `auto`: durations, the search/final split, equal-share rungs, rank correlation,
and the choice of the winner. Pure arithmetic on given rates: nothing trains here."""

from __future__ import annotations

import pytest

from cifar_search.errors import ConfigError
from cifar_search.search import auto_plan
from cifar_search.search.auto_plan import Candidate, parse_duration, plan, rank_correlation
from cifar_search.search.auto_search import is_recipe, pick_winner, survivors
from cifar_search.train.config import TrainConfig
from cifar_search.train.presets import get_preset
from cifar_search.train.throughput import Rate, tta_views

FAST94 = get_preset("fast94").config  # 10 epochs, flip_translate TTA


def cand(name: str, rate: float = 800.0, preset: str | None = "x",
         cfg: TrainConfig = FAST94) -> Candidate:
    return Candidate(name, cfg, Rate(train=rate, eval=1400.0), preset)


@pytest.mark.parametrize(("text", "seconds"), [
    ("600", 600), ("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400),
    (" 10M ", 600), ("1d", 86400),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0m", "-5", "10 minutes", "m", "1h-2m", "abc"])
def test_parse_duration_refuses_with_the_value(text: str) -> None:
    with pytest.raises(ConfigError, match="--time"):
        parse_duration(text)


def test_short_budget_trains_the_reference_without_a_search() -> None:
    # 10 minutes on a 2-core CPU: fast94's own 10 epochs at ~800 images/s take ~625 s
    p = plan(590, 600, cand("fast94"), device="cpu", train_images=50_000,
             split_images=45_000, test_images=10_000, n_candidates=18)
    assert p.search_s == 0 and p.rungs == () and p.final_s == 590
    assert "no search" in p.reason and "fast94" in p.reason


def test_long_budget_searches_and_the_plan_fits_the_time_left() -> None:
    ref = cand("fast94", rate=800.0)
    p = plan(7190, 7200, ref, device="cpu", train_images=50_000, split_images=45_000,
             test_images=10_000, n_candidates=18)
    assert p.search_s == pytest.approx(auto_plan.SEARCH_SHARE * 7190)
    assert p.search_s + p.final_s == pytest.approx(p.left_s)
    assert [r.images for r in p.rungs] == [5000, 15000, 45000]
    assert [r.trials for r in p.rungs] == [18, 6, 2]
    eval_s = ref.rate.eval_seconds(auto_plan.VAL_IMAGES)
    spent = sum(r.trials * (r.seconds + eval_s) for r in p.rungs)
    assert spent == pytest.approx(p.search_s)  # every rung gets the same share, all of it used
    assert all(r.seconds > 0 for r in p.rungs)
    # the reference gets at least one epoch at the lowest rung
    assert ref.rung_epochs(p.rungs[0]) >= 1


def test_fewer_rungs_when_the_lowest_would_not_hold_an_epoch() -> None:
    slow = cand("slow", rate=40.0)  # 10 epochs of 50,000 images: 12,500 s
    p = plan(40_000, 40_000, slow, device="cpu", train_images=50_000, split_images=45_000,
             test_images=10_000, n_candidates=54)
    assert p.rungs and len(p.rungs) < auto_plan.N_RUNGS
    assert all(slow.rung_epochs(r) >= 1 for r in p.rungs)


def test_a_budget_that_cannot_even_test_and_export_is_refused() -> None:
    with pytest.raises(ConfigError, match="leaves no time to train"):
        plan(30, 30, cand("fast94"), device="cpu", train_images=50_000, split_images=45_000,
             test_images=10_000, n_candidates=18)


def test_final_share_subtracts_test_evaluation_exports_and_margin() -> None:
    share = auto_plan.final_share(600, 600, "cpu", 10_000, 1000.0, "flip_translate")
    # the TTA pass (6 views) and the one-view pass; the plain and the TTA exports
    export = auto_plan.EXPORT_SECONDS["cpu"]
    assert share == pytest.approx(600 - 2 * export - auto_plan.MARGIN * 600 - 10_000 * 7 / 1000)
    plain = auto_plan.final_share(600, 600, "cpu", 10_000, 1000.0, "none")
    assert plain == pytest.approx(600 - export - auto_plan.MARGIN * 600 - 10_000 / 1000)
    assert tta_views("flip_translate") == 6 and tta_views("none") == 1


def test_rank_correlation() -> None:
    assert rank_correlation([(0.1, 0.2), (0.2, 0.3), (0.3, 0.5)]) == pytest.approx(1.0)
    assert rank_correlation([(0.1, 0.5), (0.2, 0.3), (0.3, 0.2)]) == pytest.approx(-1.0)
    assert rank_correlation([(0.1, 0.2), (0.2, 0.3)]) is None  # too few to say anything


def test_the_best_recipe_always_goes_on_to_the_next_rung() -> None:
    recipe, worse_recipe = cand("fast94", preset="fast94"), cand("davidnet", preset="davidnet")
    variants = [cand(f"fast94~{i}", preset="fast94") for i in range(1, 4)]
    assert is_recipe(recipe) and not is_recipe(variants[0])
    scores = {"fast94~1": (0.80, 1), "fast94~2": (0.79, 2), "fast94~3": (0.78, 3),
              "fast94": (0.70, 4), "davidnet": (0.60, 5)}
    kept = survivors([recipe, worse_recipe, *variants], scores, 2)
    assert [c.name for c in kept] == ["fast94~1", "fast94~2", "fast94"]


def test_the_strongest_preset_by_prior_goes_on_whatever_a_low_rung_scored() -> None:
    """As measured on the reference CPU: fast94 (batch 1024) ranks low on 5,000 images."""
    fast94 = cand("fast94", preset="fast94")
    alexnet = cand("rdfia-alexnet", preset="rdfia-alexnet")
    variants = [cand(f"rdfia-alexnet~{i}", preset="rdfia-alexnet") for i in range(1, 3)]
    scores = {"fast94": (0.31, 0), "rdfia-alexnet": (0.43, 4), "rdfia-alexnet~1": (0.42, 9),
              "rdfia-alexnet~2": (0.44, 17)}
    pool = [fast94, alexnet, *variants]
    assert [c.name for c in survivors(pool, scores, 2)] == ["rdfia-alexnet~2", "rdfia-alexnet"]
    kept = survivors(pool, scores, 2, reference=fast94)
    assert [c.name for c in kept] == ["rdfia-alexnet~2", "rdfia-alexnet", "fast94"]
    assert survivors(pool, {}, 2, reference=fast94) == []  # not scored: nothing to carry


def test_presets_win_unless_a_variant_beats_them_at_the_top_rung() -> None:
    recipe, variant = cand("fast94", preset="fast94"), cand("fast94~1", preset="fast94")
    assert pick_winner([recipe, variant], {"fast94": (0.9, 1), "fast94~1": (0.89, 2)}) is recipe
    assert pick_winner([recipe, variant], {"fast94": (0.9, 1), "fast94~1": (0.9, 2)}) is recipe
    assert pick_winner([recipe, variant], {"fast94": (0.9, 1), "fast94~1": (0.91, 2)}) is variant
    with pytest.raises(ValueError):
        pick_winner([recipe], {})


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (100.0, (10, None)),  # exactly 10 epochs of all images
        (100.5, (10, None)),  # 10 epochs fill 99.5%: kept whole
        (107.0, (11, 9700)),  # 10.7 epochs: 11 of 9,700 images (97 batches of 100)
        (35.0, (4, 8700)),  # 3.5 epochs: 4 of 8,700
        (4.0, (1, 4000)),  # under one epoch: one epoch of a subset
        (0.0, (1, 100)),  # nothing left: one batch
    ],
)
def test_fill_uses_the_share_to_within_a_batch_an_epoch(
    seconds: float, expected: tuple[int, int | None]
) -> None:
    rate = Rate(train=1000.0, eval=5000.0)  # 10,000 images: 10 s an epoch
    epochs, epoch_images = auto_plan.fill(seconds, rate, 10_000, 100)
    assert (epochs, epoch_images) == expected
    used = epochs * (epoch_images or 10_000) / rate.train
    assert used <= max(seconds, 0.1) and (seconds == 0 or used >= 0.99 * seconds)
