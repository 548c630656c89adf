"""The search of ``auto``: successive halving over equal-time rungs, every trial a trial of the
study (see :mod:`cifar_search.search.auto` for the whole command,
:mod:`cifar_search.search.auto_plan` for the rungs). A recipe's variants (``name~i``) are not
recipes: the best recipe of each rung and the strongest preset by prior always go on, so the top
rung compares the winner with both, and a variant wins only by beating them."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from cifar_search.errors import DivergedError
from cifar_search.search import auto_plan
from cifar_search.search.auto_plan import Candidate, Plan, Rung
from cifar_search.search.budget import Budget
from cifar_search.search.objective import Objective, is_out_of_memory, trial_seed
from cifar_search.search.space import Space, config_to_params, outside_space, suggest_config
from cifar_search.search.trackers import Tracker
from cifar_search.train.data import CifarArrays
from cifar_search.train.evaluation import evaluate
from cifar_search.train.models import model_cost
from cifar_search.train.pacing import Pacer
from cifar_search.train.recipe import DataSpec, SplitData, prepare, split
from cifar_search.train.runtime import Runtime, versions
from cifar_search.train.trainer import EpochMetrics, train

Scores = dict[str, tuple[float, int]]  # candidate -> (validation accuracy, trial number)
ATTR = "auto"  # study user attribute: T, time spent, the plan, the rungs, the final training


def record(study: optuna.Study, **changes: Any) -> None:
    """Update the study's ``auto`` user attribute."""
    state = dict(study.user_attrs.get(ATTR) or {})
    state.update(changes)
    study.set_user_attr(ATTR, state)


def is_recipe(c: Candidate) -> bool:
    """A preset (or a planted recipe), scaled or not; not a variant of one."""
    return c.preset is not None and "~" not in c.name


def survivors(pool: list[Candidate], got: Scores, k: int,
              reference: Candidate | None = None) -> list[Candidate]:
    """The ``k`` best of ``pool`` by score, plus the best recipe and the ``reference`` (the
    strongest preset by prior) where they are not among them.

    The reference goes on whatever it scored: a low rung ranks a big-batch recipe low (fast94,
    batch 1024, gets 10 optimiser steps from 13 s on 5,000 images on a 2-core CPU, 31% against
    an AlexNet's 43%) although it wins every longer training, so only the top rung may drop it.
    """
    ranked = sorted((c for c in pool if c.name in got), key=lambda c: -got[c.name][0])
    keep = ranked[:k]
    best_recipe = next((c for c in ranked if is_recipe(c)), None)
    for must in (best_recipe, reference):  # never behind the presets
        if must is not None and must.name in got and must not in keep:
            keep.append(must)
    return keep


def parents(pool: list[Candidate], got: Scores, reference: Candidate | None = None,
            k: int = 2) -> list[Candidate]:
    """Whose variants the lowest rung adds: the ``reference`` (the strongest preset by prior,
    which goes on to the top rung whatever it scored and is shipped unless beaten there, so its
    neighbourhood is the likeliest place to beat it), then the best scored of the others, ``k``
    in all. The best-scored alone would vary whatever learns fastest in seconds: at T = 45
    minutes on the reference CPU every variant was of an AlexNet or the ENSTA CNN."""
    ranked = sorted((c for c in pool if c.name in got), key=lambda c: -got[c.name][0])
    first = [reference] if reference is not None and reference.name in got else []
    return (first + [c for c in ranked if c not in first])[:k]


def noise(accuracy: float, images: int) -> float:
    """One standard error of the difference of two accuracies near ``accuracy``, each measured
    on ``images`` validation images (binomial): what a top-rung lead must exceed to be a lead.
    At 80% on 5,000 images it is 0.8 points, more than most variants of a tuned recipe move."""
    p = min(max(accuracy, 0.0), 1.0)
    return math.sqrt(2 * p * (1 - p) / max(images, 1))


def pick_winner(pool: list[Candidate], top: Scores, reference: Candidate | None = None,
                val_images: int = 0) -> Candidate:
    """The best scored candidate at the top rung; a tie goes to the recipe (and then to the
    earlier one in ``pool``, which is in prior order), so a variant must beat the recipe.

    With a scored ``reference`` (the strongest preset by prior) and ``val_images``, another
    candidate must beat it by more than :func:`noise`: the validation split is a sample, and a
    lead within its noise would ship a config that is as likely worse as better (Hyperband's
    last rung compares a handful of configs on one 5,000-image split)."""
    scored = [c for c in pool if c.name in top]
    if not scored:
        raise ValueError("no candidate was scored at the top rung")
    best = max(scored, key=lambda c: (top[c.name][0], is_recipe(c), -scored.index(c)))
    if reference is not None and reference.name in top and val_images > 0:
        ref_acc = top[reference.name][0]
        if top[best.name][0] - ref_acc <= noise(ref_acc, val_images):
            return reference
    return best


def rung_data(images: int | None, n_train: int) -> DataSpec:
    """What a rung trial trains on (``images`` of the split) and is scored on: the fixed
    validation split of :data:`~cifar_search.search.auto_plan.VAL_IMAGES` (a tenth of a
    smaller training set), the same at every rung."""
    return Budget("auto", epochs=1, train_subset=images,
                  val_size=auto_plan.VAL_IMAGES).data_spec(n_train)


class Search:
    """Successive halving over the candidates; every trial a real trial of the study."""

    def __init__(self, study: optuna.Study, space: Space, runtime: Runtime,
                 arrays: CifarArrays, seed: int, spent: Callable[[], float], plan: Plan,
                 say: Callable[[str], None], tracker: Tracker | None = None) -> None:
        self.study, self.space, self.runtime, self.seed = study, space, runtime, seed
        self.arrays, self.spent, self.plan, self.say = arrays, spent, plan, say
        self.tracker = tracker  # MLflow / TensorBoard: every rung trial (search.trackers)
        self.deadline = plan.time_s - plan.left_s + plan.search_s  # in time spent on T
        self.done = {(t.user_attrs.get("candidate"), t.user_attrs.get("rung")): t
                     for t in study.get_trials(deepcopy=False)
                     if t.state == optuna.trial.TrialState.COMPLETE}

    def run(self, presets: list[Candidate]) -> tuple[Candidate, int | None, list[float | None]]:
        pool = presets
        scores: list[dict[str, tuple[float, int]]] = []
        for r, rung in enumerate(self.plan.rungs):
            # the reference first: a rung cut short by the search's time keeps it
            got = self._rung(r, rung, sorted(pool, key=lambda c: c is not presets[0]))
            if r == 0:
                variants = self._variants(parents(pool, got, presets[0]),
                                          rung.trials - len(pool))
                got.update(self._rung(r, rung, variants))
                pool = pool + variants
            if not got:
                break
            scores.append(got)
            pool = survivors(pool, got, self.plan.rungs[r + 1].trials
                             if r + 1 < len(self.plan.rungs) else 1, reference=presets[0])
        if not scores:  # not one trial finished: the strongest preset, untested
            return presets[0], None, []
        top = scores[-1]
        by_name = {c.name: c for c in pool}
        val_images = rung_data(None, len(self.arrays.train_y)).val_size or 0
        best = pick_winner(pool, top, presets[0], val_images).name
        rhos = [auto_plan.rank_correlation([(a[n][0], b[n][0]) for n in b if n in a])
                for a, b in itertools.pairwise(scores)]
        leader = max(top, key=lambda n: top[n][0])
        if top[leader][0] > top[best][0]:
            self.say(f"{leader} led {best} by {100 * (top[leader][0] - top[best][0]):.2f} "
                     f"points at the top rung, within the noise of {val_images:,} validation "
                     f"images ({100 * noise(top[best][0], val_images):.2f}): {best} stays")
        self.say(f"winner {best}: {100 * top[best][0]:.2f}% validation accuracy at rung "
                 f"{len(scores) - 1} (trial {top[best][1]}); rank correlation between rungs "
                 f"{', '.join('n/a' if r is None else f'{r:.2f}' for r in rhos) or 'n/a'}")
        return by_name[best], top[best][1], rhos

    def _variants(self, ranked: list[Candidate], n: int) -> list[Candidate]:
        """``n`` variants of ``ranked`` in turn (:func:`parents`): lr and weight decay times
        2^U(-1, 1), label smoothing moved by U(-0.1, 0.1); the same model, so the same speed."""
        rng = np.random.default_rng(self.seed)
        out: list[Candidate] = []
        for i in range(max(0, n) if ranked else 0):
            parent = ranked[i % len(ranked)]
            params = config_to_params(parent.config, self.space)
            for key in ("lr_sgd", "lr_adam", "weight_decay"):
                if key in params:
                    params[key] = self._clip(key, params[key] * 2.0 ** rng.uniform(-1, 1))
            ls = params.get("label_smoothing", 0.0) + rng.uniform(-0.1, 0.1)
            params["use_label_smoothing"] = ls >= 0.02
            if ls >= 0.02:
                params["label_smoothing"] = self._clip("label_smoothing", ls)
            else:
                params.pop("label_smoothing", None)
            if outside_space(params, self.space):
                continue
            cfg = suggest_config(optuna.trial.FixedTrial(params), self.space,
                                 epochs=parent.config.epochs)
            out.append(Candidate(f"{parent.name}~{i + 1}", cfg, parent.rate, parent.preset))
        return out

    def _clip(self, key: str, value: float) -> float:
        p = self.space.get(key)
        low, high = float(p.low or 0.0), float(p.high or value)
        return min(max(float(value), low), high)

    def _rung(self, r: int, rung: Rung, pool: list[Candidate]) -> dict[str, tuple[float, int]]:
        got: dict[str, tuple[float, int]] = {}
        objective: RungObjective | None = None  # its data is built at the first trial to run
        for c in pool:
            done = self.done.get((c.name, r))
            if done is not None:
                got[c.name] = (float(done.value or 0.0), done.number)
                continue
            left = self.deadline - self.spent()
            # a trial starts only with half its time left or more: one started seconds before
            # the deadline would take a whole trial out of the final training's share
            if left < rung.seconds / 2:
                self.say(f"search time is up at rung {r}: {max(left, 0.0):.0f} s of the search "
                         f"left, a trial takes {rung.seconds:.0f} s")
                break
            if objective is None:
                data = split(self.arrays, rung_data(rung.images, len(self.arrays.train_y)),
                             self.runtime.device)
                objective = RungObjective(self.space, self.runtime, self.seed, data,
                                          rung.seconds, self.tracker)
            epochs = c.rung_epochs(rung)
            self.study.enqueue_trial(
                config_to_params(c.config, self.space),
                user_attrs={"candidate": c.name, "rung": r, "rung_images": rung.images,
                            "rung_epochs": epochs, **({"preset": c.preset} if c.preset
                                                      and "~" not in c.name else {})})
            self.study.optimize(objective, n_trials=1, catch=(Exception,),
                                callbacks=None if self.tracker is None else [self.tracker])
            t = self.study.trials[-1]
            record(self.study, spent_s=self.spent())
            if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None:
                got[c.name] = (float(t.value), t.number)
                self.say(f"rung {r} trial {t.number} {c.name}: {epochs} epoch(s) on "
                         f"{rung.images:,} images, {100 * t.value:.2f}% validation accuracy")
            else:
                self.say(f"rung {r} trial {t.number} {c.name}: ended "
                         f"{t.user_attrs.get('end', t.state.name.lower())}")
        return got


@dataclass
class RungObjective:
    """One equal-time training of a rung: the trial's params at ``rung_epochs`` epochs on the
    rung's images, paced to end ``seconds`` after it starts, scored once at the end on the
    validation split (single view).

    Paced as the final training is (:class:`~cifar_search.train.pacing.Pacer`): the epochs come
    from the candidate's measured rate, which a shared CPU misses by 10-40% (at T = 4 h 15 min
    on the reference CPU two AlexNet trials ran at 1,672-1,842 images/s against 2,400-2,900
    cached, and rung 1 took 1,982 s of its 1,518), so after the first epoch the images of the
    epochs left are fitted into the time left. A trial can end early, never much later."""

    space: Space
    runtime: Runtime
    seed: int
    data: SplitData  # the rung's images and the validation split, on the device
    seconds: float  # of training a trial
    tracker: Tracker | None = None  # params at the start, every epoch, the score at the end

    def __call__(self, trial: optuna.Trial) -> float:
        cfg = suggest_config(trial, self.space, epochs=int(trial.user_attrs["rung_epochs"]))
        seed = trial_seed(self.seed, trial.number)
        n_params, flops = model_cost(cfg.model)
        for key, value in {"config": cfg.to_dict(), "seed": seed, "budget": "auto",
                           "device": self.runtime.describe(), "versions": versions(),
                           "n_params": n_params, "flops": flops}.items():
            trial.set_user_attr(key, value)
        if self.tracker is not None:
            self.tracker.start(trial.number, {**trial.params, "candidate":
                                              trial.user_attrs.get("candidate"),
                                              "rung": trial.user_attrs.get("rung"),
                                              "rung_epochs": cfg.epochs})
        try:
            p = prepare(cfg, self.data, self.runtime, seed=seed)
            assert p.val_loader is not None  # the rung's budget holds out validation images
            loader = p.train_loader
            pacer = Pacer(loader, cfg.epochs, self.seconds)
            images_run: list[int] = []

            def paced(epoch: int, m: EpochMetrics) -> None:
                images_run.append(loader.epoch_images)
                pacer.after_epoch(epoch, m.seconds, len(loader))
                if self.tracker is not None:  # no validation before the end: no val_* yet
                    self.tracker.epoch(trial.number, epoch, {
                        k: v for k, v in m.as_dict().items() if not k.startswith("val_")})

            result = train(p.model, cfg, loader, None, self.runtime, seed=seed,
                           on_epoch_end=paced)
            val_loss, val_acc = evaluate(p.model, p.val_loader, self.runtime)
        except DivergedError as exc:
            Objective._end(trial, "diverged", [], str(exc))
            raise optuna.TrialPruned(f"diverged: {exc}") from None
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            Objective._end(trial, "oom", [], str(exc).splitlines()[0][:300])
            raise optuna.TrialPruned("out of memory") from None
        curve = [m.as_dict() for m in result.history]
        curve[-1] |= {"val_loss": val_loss, "val_acc": val_acc}
        if self.tracker is not None:  # scored once, after the last epoch
            self.tracker.epoch(trial.number, len(curve), {"val_loss": val_loss,
                                                          "val_acc": val_acc})
        trial.set_user_attr("train_seconds", sum(m.seconds for m in result.history))
        trial.set_user_attr("images_per_s", result.images_per_s)
        trial.set_user_attr("epoch_images_run", images_run)
        Objective._end(trial, "complete", curve, "")
        return val_acc
