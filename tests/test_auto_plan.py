"""The plan of `auto`: durations, the search/final split, equal-share rungs, rank correlation,
and the choice of the winner. Pure arithmetic on given rates: nothing trains here."""

from __future__ import annotations

import pytest

from cifar_search.errors import ConfigError
from cifar_search.search import auto_plan
from cifar_search.search.auto_plan import Candidate, parse_duration, plan, rank_correlation
from cifar_search.search.auto_search import is_recipe, noise, parents, pick_winner, survivors
from cifar_search.search.progress import duration
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
    ref = cand("fast94", rate=800.0)  # 10 epochs of 45,000 images: 562 s
    p = plan(14_390, 14_400, ref, device="cpu", train_images=50_000, split_images=45_000,
             test_images=10_000, n_candidates=18)
    assert p.search_s == pytest.approx(auto_plan.SEARCH_SHARE * 14_390)
    assert p.search_s + p.final_s == pytest.approx(p.left_s)
    assert [r.images for r in p.rungs] == [5000, 15000, 45000]
    assert [r.trials for r in p.rungs] == [18, 6, 2]
    eval_s = ref.rate.eval_seconds(auto_plan.VAL_IMAGES)
    spent = sum(r.trials * (r.seconds + eval_s) for r in p.rungs)
    assert spent == pytest.approx(p.search_s)  # every rung gets the same share, all of it used
    # the top rung trains each finalist for at least the reference's own recipe
    assert p.rungs[-1].seconds >= ref.rate.train_seconds(45_000, FAST94.epochs)
    assert ref.rung_epochs(p.rungs[-1]) >= FAST94.epochs
    assert ref.rung_epochs(p.rungs[0]) >= FAST94.epochs  # as many epochs of fewer images


def test_a_search_starts_where_its_top_rung_holds_the_references_own_recipe() -> None:
    """At T = 45 minutes on the reference CPU (fast94 at ~617 images/s, 3.2 of its trainings)
    the lowest rung gave fast94 4-10 optimiser steps and ranked it at chance: no search there.
    The search starts where each finalist at the top rung gets fast94's own 10 epochs."""
    ref = cand("fast94", rate=617.0)

    def search_at(time_s: float) -> auto_plan.Plan:
        return plan(time_s - 10, time_s, ref, device="cpu", train_images=50_000,
                    split_images=45_000, test_images=10_000, n_candidates=18)

    assert search_at(2700).rungs == ()
    floor = auto_plan.min_search_seconds(18, 45_000, ref) / auto_plan.SEARCH_SHARE + 10
    assert 12 * 3600 > floor > 15 * ref.rate.train_seconds(50_000, 10)  # ~20 trainings: hours
    below, above = search_at(floor - 1), search_at(floor + 1)
    assert below.rungs == () and duration(floor) in below.reason
    assert above.rungs and above.rungs[-1].seconds >= ref.rate.train_seconds(45_000, 10)
    # a device 100 times faster searches at 10 minutes
    fast = Candidate("fast94", FAST94, Rate(train=61_700.0, eval=140_000.0), "fast94")
    assert plan(590, 600, fast, device="cuda", train_images=50_000, split_images=45_000,
                test_images=10_000, n_candidates=18).rungs
    # one candidate: nothing to compare
    assert plan(590, 600, fast, device="cuda", train_images=50_000, split_images=45_000,
                test_images=10_000, n_candidates=1).rungs == ()


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


def test_rank_correlation_of_a_rung_that_scored_all_alike_is_none_without_a_warning() -> None:
    """Three configs all at chance (10%) at a low rung: no ranking, and no scipy warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rank_correlation([(0.1, 0.2), (0.1, 0.3), (0.1, 0.5)]) is None
        assert rank_correlation([(0.2, 0.4), (0.3, 0.4), (0.5, 0.4)]) is None


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


def test_variants_are_of_the_strongest_preset_and_the_best_other_whatever_rung_0_scored() -> None:
    """At T = 45 minutes on the reference CPU the two best of rung 0 were an AlexNet and the
    ENSTA CNN, so no variant was of fast94, the config the top rung must beat."""
    fast94, ensta = cand("fast94", preset="fast94"), cand("ensta-cnn", preset="ensta-cnn")
    alexnet = cand("rdfia-alexnet", preset="rdfia-alexnet")
    scores = {"fast94": (0.11, 0), "rdfia-alexnet": (0.49, 1), "ensta-cnn": (0.43, 2)}
    pool = [fast94, alexnet, ensta]
    assert parents(pool, scores, fast94) == [fast94, alexnet]
    assert parents(pool, scores) == [alexnet, ensta]  # no reference: the two best
    assert parents(pool, {"rdfia-alexnet": (0.49, 1)}, fast94) == [alexnet]  # fast94 failed
    assert parents(pool, scores, fast94, k=1) == [fast94]


def test_presets_win_unless_a_variant_beats_them_at_the_top_rung() -> None:
    recipe, variant = cand("fast94", preset="fast94"), cand("fast94~1", preset="fast94")
    assert pick_winner([recipe, variant], {"fast94": (0.9, 1), "fast94~1": (0.89, 2)}) is recipe
    assert pick_winner([recipe, variant], {"fast94": (0.9, 1), "fast94~1": (0.9, 2)}) is recipe
    assert pick_winner([recipe, variant], {"fast94": (0.9, 1), "fast94~1": (0.91, 2)}) is variant
    with pytest.raises(ValueError):
        pick_winner([recipe], {})


def test_a_lead_over_the_reference_within_the_validation_noise_keeps_the_reference() -> None:
    """On 5,000 validation images near 90%, one standard error of a difference is 0.6 points:
    a variant 0.5 points ahead is noise, 1 point ahead is a lead."""
    fast94, variant = cand("fast94", preset="fast94"), cand("fast94~1", preset="fast94")
    davidnet = cand("davidnet", preset="davidnet")
    assert noise(0.9, 5000) == pytest.approx(0.006)
    pool = [fast94, davidnet, variant]
    close = {"fast94": (0.900, 1), "davidnet": (0.904, 2), "fast94~1": (0.905, 3)}
    assert pick_winner(pool, close) is variant  # no reference given: the best score
    assert pick_winner(pool, close, fast94, 5000) is fast94
    ahead = {"fast94": (0.900, 1), "davidnet": (0.904, 2), "fast94~1": (0.910, 3)}
    assert pick_winner(pool, ahead, fast94, 5000) is variant
    assert pick_winner(pool, ahead, fast94, 1000) is fast94  # fewer images, more noise
    unscored = {"davidnet": (0.904, 2), "fast94~1": (0.905, 3)}
    assert pick_winner(pool, unscored, fast94, 5000) is variant  # nothing to keep


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (100.0, (11, 9000)),  # 10 epochs' images as 11 epochs of 9,000 (90 batches of 100)
        (107.0, (12, 8900)),  # 10.7 epochs: 12 of 8,900
        (35.0, (4, 8700)),  # 3.5 epochs: 4 of 8,700
        (4.0, (1, 4000)),  # under one epoch: one epoch of a subset
        (0.0, (1, 100)),  # nothing left: one batch
    ],
)
def test_fill_uses_the_share_to_within_a_batch_an_epoch_with_room_to_grow(
    seconds: float, expected: tuple[int, int | None]
) -> None:
    rate = Rate(train=1000.0, eval=5000.0)  # 10,000 images: 10 s an epoch
    epochs, epoch_images = auto_plan.fill(seconds, rate, 10_000, 100)
    assert (epochs, epoch_images) == expected
    used = epochs * (epoch_images or 10_000) / rate.train
    assert used <= max(seconds, 0.1) and (seconds == 0 or used >= 0.98 * seconds)
    if seconds >= 10:  # a machine up to HEADROOM faster than measured still fills the time
        assert epochs * 10_000 / rate.train >= (1 + auto_plan.HEADROOM) * seconds - 1e-9
