"""Retrain a stored trial (or a preset) on all training images, test it once, export it.

The configuration of a trial is rebuilt exactly as the search built it: its params replayed
through :func:`~cifar_search.search.space.suggest_config` with ``optuna.trial.FixedTrial`` on the
space the study stored (user attribute ``space``), and the result must equal the trial's stored
``config`` apart from ``epochs``, or :class:`StudyError` names the fields that differ.

What changes from the search, and why:

* **Data**: all training images (the 45,000 / 5,000 train / validation split merged, 50,000 for
  CIFAR-10). There is no validation set, so **early stopping is off** (the trainer runs every
  epoch) and nothing is chosen on held-out data: the config was chosen by the search.
* **Epochs**: a longer budget, by default the study's ``budget.retrain_epochs`` (``gpu`` 40,
  ``cpu`` 15, ``smoke`` 2), a preset's own ``epochs``, or ``--epochs``. The learning-rate
  schedule spans the new budget.
* **Test set**: the 10,000 test images are evaluated **once per seed, after the last epoch**,
  with the config's test-time augmentation (``test_acc``, the headline) and with one view per
  image (``test_acc_single``, what the plain exports give; the same number when ``tta`` is
  ``none``), and used for nothing else. With K seeds each is the mean ± sample standard
  deviation (0 for one seed).

Run folder ``runs/<study>/trial-<n>`` (``runs/<study>/preset-<name>``, or ``runs/presets/
preset-<name>`` without a study; ``--out`` replaces it): a model folder (``model.safetensors``,
``config.json``, ``metrics.json``) holding the **first seed's** model (never the best: picking
by test accuracy would be a choice made on the test set), ``seed-<s>/`` model folders for the
other seeds, ``misclassified.npz``, ``model.pt2``, ``model.onnx`` (one view), with TTA also
``model_tta.pt2`` and ``model_tta.onnx`` (the views averaged inside), and the model card
``MODEL.md``, which says which file gives which number. Every file is written atomically. The
results are recorded on the study as ``retrain:<n>`` / ``retrain:preset:<name>`` (Optuna
forbids changing finished trials).

**Stopped and run again, a retraining goes on where it was.** While a seed trains, its state
is written to ``resume/seed-<s>.pt`` in the run folder about once a minute, inside an epoch
as well as after one (:mod:`cifar_search.train.resume`), and a finished seed's weights and
test results are written there before the next seed starts, so a re-run with the same config,
seed and data goes on from the last write: the same training as one that never stopped, its
test set still used once.
A paced training (``deadline``) fits the epochs left into the time it is given now. The folder
is removed once the run folder is complete; ``resume=False`` starts again.
"""

from __future__ import annotations

import logging
import math
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch.nn.functional as F
from optuna.trial import FrozenTrial, TrialState
from torch import Tensor, nn

from cifar_search.atomic import atomic_path, atomic_write_text
from cifar_search.errors import ConfigError, StudyError
from cifar_search.names import check_name
from cifar_search.search.inspection import retrain_key
from cifar_search.search.space import DEFAULT_SPACE, flatten_config, suggest_config
from cifar_search.search.space_file import apply_overrides
from cifar_search.search.storage import default_url, load_existing_study
from cifar_search.train.checkpoint import save_model_folder
from cifar_search.train.config import TrainConfig
from cifar_search.train.data import CLASSES, CifarArrays, load_cifar10
from cifar_search.train.evaluation import place
from cifar_search.train.export import export_model
from cifar_search.train.model_card import model_card
from cifar_search.train.models import count_flops, count_params
from cifar_search.train.pacing import Pacer
from cifar_search.train.presets import get_preset
from cifar_search.train.recipe import DataSpec, SplitData, prepare, split
from cifar_search.train.resume import EVERY_S, Checkpoint, State, where
from cifar_search.train.runtime import Precision, Runtime, resolve_runtime, versions
from cifar_search.train.trainer import EpochMetrics, predict_logits, train

logger = logging.getLogger(__name__)

RUNS_DIR = Path("runs")
DEFAULT_STUDY = "cifar"
MAX_MISCLASSIFIED = 64  # test images kept in misclassified.npz (the first ones, in test order)
RESUME_DIR = "resume"  # in the run folder: the state of the seeds of an unfinished run

OnEpoch = Callable[[int, int, EpochMetrics], None]  # (seed, epoch, metrics)
Say = Callable[[str], None]  # a line for the user (the CLI prints it)


@dataclass(frozen=True)
class RetrainTarget:
    """What to retrain: the config (with the retrain epochs) and where it came from."""

    label: str  # "trial 12 of study 'cifar'" / "preset davidnet"
    folder_name: str  # "trial-12" / "preset-davidnet"
    config: TrainConfig  # epochs = the retrain budget
    epochs_source: str  # where the epoch budget comes from, for humans
    study: optuna.Study | None = None  # where the result is recorded (None: nowhere)
    trial_number: int | None = None
    preset: str | None = None

    @property
    def record_key(self) -> str | None:
        """The study user attribute the results go to (None without a study)."""
        if self.study is None:
            return None
        return retrain_key(self.trial_number, self.preset)

    def default_run_dir(self, root: Path = RUNS_DIR) -> Path:
        group = self.study.study_name if self.study is not None else "presets"
        return root / check_name("study", group) / check_name("run", self.folder_name)


@dataclass(frozen=True)
class RetrainSettings:
    seeds: int = 1  # independent trainings; seeds are seed, seed + 1, ...
    seed: int = 0  # the first seed
    out: str | Path | None = None  # run folder (default: RetrainTarget.default_run_dir())
    data: str | Path | None = None  # see cifar_search.train.data.load_cifar10
    device: str = "auto"
    precision: Precision = "auto"
    export: bool = True  # write model.pt2 and model.onnx (and model_tta.* with TTA)
    # training images an epoch, at most (None: all): each epoch a fresh random subset, so
    # ``epochs * epoch_images`` images are seen in all; ``auto`` fills its budget this way
    epoch_images: int | None = None
    # time.monotonic() by which the last seed's training must end: after each epoch the
    # images of the epochs left are fitted into the time left (cifar_search.train.pacing);
    # with K seeds each seed still to train gets an equal share of what is left when it starts
    deadline: float | None = None
    # seconds each seed's test passes take (with ``deadline``): kept out of the shares of the
    # seeds trained before the last, whose test passes come before the deadline
    test_seconds: float = 0.0
    resume: bool = True  # go on from a stopped run of the same training in the run folder
    checkpoint_every: float = EVERY_S  # seconds of training between resume files (0: each epoch)


@dataclass(frozen=True)
class RetrainResult:
    run_dir: Path
    seeds: list[int]
    test_acc: list[float]  # fraction in [0, 1], per seed
    test_acc_mean: float
    test_acc_std: float  # sample std over seeds (0 for one seed)
    epochs: int
    wall_seconds: float
    train_size: int
    test_size: int
    device: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)  # what metrics.json holds
    # one view per image (no TTA): what model.onnx / model.pt2 give; equal to test_acc when
    # the config's tta is "none"
    test_acc_single: list[float] = field(default_factory=list)
    test_acc_single_mean: float = math.nan
    test_acc_single_std: float = 0.0

    def record(self) -> dict[str, Any]:
        """The study user attribute ``retrain:...`` (see docs/architecture.md)."""
        return {"test_acc": self.test_acc, "test_acc_mean": self.test_acc_mean,
                "test_acc_std": self.test_acc_std, "test_acc_single": self.test_acc_single,
                "test_acc_single_mean": self.test_acc_single_mean,
                "test_acc_single_std": self.test_acc_single_std, "seeds": self.seeds,
                "run_dir": str(self.run_dir.resolve()), "epochs": self.epochs,
                "wall_seconds": self.wall_seconds}


def resolve_target(
    which: str | None = None,
    *,
    preset: str | None = None,
    study: str | None = None,
    storage: str | None = None,
    epochs: int | None = None,
) -> RetrainTarget:
    """The config to retrain: ``which`` (``best`` or a trial number) of ``study``, or ``preset``.

    Args:
        which: ``"best"`` or a trial number (exclusive with ``preset``).
        preset: A preset name; with ``study`` too, the result is recorded on that study.
        study: Study name (default for trials: ``cifar``).
        storage: Storage URL (default: ``sqlite:///studies/<study>.db``).
        epochs: Epoch budget (default: the study's ``retrain_epochs``, or the preset's epochs).

    Raises:
        ConfigError: neither or both of ``which`` and ``preset``, unknown preset, bad epochs.
        StudyError: unknown study or trial, a trial that cannot be retrained, or a stored
            config that its params do not rebuild.
    """
    if (which is None) == (preset is None):
        raise ConfigError("give a trial to retrain (best or a trial number) or --preset NAME, "
                          f"not {'both' if preset else 'neither'}.")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"epochs must be >= 1, but got {epochs=}.")
    if preset is not None:
        cfg = get_preset(preset).config
        loaded = _load_study(study, storage) if study else None
        source = "--epochs" if epochs else f"the preset's own epoch budget ({cfg.epochs})"
        return RetrainTarget(f"preset {preset}", f"preset-{preset}",
                             cfg.replace(epochs=epochs or cfg.epochs).validate(), source,
                             study=loaded, preset=preset)
    loaded = _load_study(study or DEFAULT_STUDY, storage)
    trial = select_trial(loaded, str(which))
    if epochs is not None:
        source = "--epochs"
    else:
        budget = loaded.user_attrs.get("budget")
        if not (isinstance(budget, dict) and isinstance(budget.get("retrain_epochs"), int)):
            raise StudyError(f"study {loaded.study_name!r} stores no budget with retrain_epochs: "
                             "pass --epochs.")
        epochs = budget["retrain_epochs"]
        source = f"the study's budget {budget.get('name')!r}: retrain_epochs = {epochs}"
    cfg = rebuild_trial_config(loaded, trial, epochs)
    return RetrainTarget(f"trial {trial.number} of study {loaded.study_name!r}",
                         f"trial-{trial.number}", cfg, source, study=loaded,
                         trial_number=trial.number)


def _load_study(name: str, storage: str | None) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return load_existing_study(storage or default_url(name), name)


def select_trial(study: optuna.Study, which: str) -> FrozenTrial:
    """``best`` (one objective) or the trial numbered ``which``; it must have trained."""
    name = study.study_name
    if which == "best":
        if len(study.directions) > 1:
            raise StudyError(f"study {name!r} has several objectives, so no single best trial: "
                             "pick a trial number of the Pareto front (cifar-search best).")
        try:
            trial = study.best_trial
        except ValueError:
            raise StudyError(f"study {name!r} has no complete trial yet.") from None
    elif which.isdigit():
        trials = study.get_trials(deepcopy=False)
        found = [t for t in trials if t.number == int(which)]
        if not found:
            raise StudyError(f"study {name!r} has no trial {which} (trials 0 to "
                             f"{len(trials) - 1}).")
        trial = found[0]
    else:
        raise ConfigError(f"the trial must be 'best' or a trial number, but got {which!r}.")
    end = trial.user_attrs.get("end", trial.state.name.lower())
    trained = trial.state == TrialState.COMPLETE or (
        trial.state == TrialState.PRUNED and end == "pruned")
    if not trained or "config" not in trial.user_attrs:
        raise StudyError(f"trial {trial.number} of study {name!r} ended {end!r} "
                         f"({trial.state.name.lower()}): only complete or pruned trials with a "
                         "stored config can be retrained.")
    if trial.state == TrialState.PRUNED:
        logger.warning("trial %d was pruned at epoch %s; retraining its config anyway",
                       trial.number, trial.user_attrs.get("end_epoch"))
    return trial


def rebuild_trial_config(study: optuna.Study, trial: FrozenTrial, epochs: int) -> TrainConfig:
    """Replay the trial's params on the study's stored space; check it against ``config``."""
    text = study.user_attrs.get("space")
    if not isinstance(text, str):
        raise StudyError(f"study {study.study_name!r} stores no search space (user attribute "
                         "'space'); it was not created by cifar-search run.")
    try:
        space = apply_overrides(DEFAULT_SPACE, tomllib.loads(text))
        cfg = suggest_config(optuna.trial.FixedTrial(trial.params), space, epochs=epochs)
        stored = TrainConfig.from_dict(trial.user_attrs["config"])
    except (tomllib.TOMLDecodeError, ConfigError, ValueError) as exc:
        raise StudyError(f"trial {trial.number} of study {study.study_name!r}: its config "
                         f"cannot be rebuilt from its params ({exc}).") from None
    diff = config_differences(cfg.replace(epochs=stored.epochs), stored)
    if diff:
        raise StudyError(f"trial {trial.number} of study {study.study_name!r}: replaying its "
                         f"params gives a config that differs from the stored one at "
                         f"{'; '.join(diff[:5])}: refusing to retrain something else.")
    return cfg


def config_differences(a: TrainConfig, b: TrainConfig) -> list[str]:
    """``field: a != b`` for every dotted field where two configs differ (floats to 1e-9)."""
    fa, fb = flatten_config(a), flatten_config(b)
    out = []
    for key in fa:
        x, y = fa[key], fb.get(key)
        same = (math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
                if isinstance(x, float) and isinstance(y, (int, float)) else x == y)
        if not same:
            out.append(f"{key}: {x!r} != {y!r}")
    return out


def retrain(
    target: RetrainTarget, settings: RetrainSettings | None = None, *,
    on_epoch: OnEpoch | None = None, arrays: CifarArrays | None = None,
    say: Say = logger.info,
) -> RetrainResult:
    """Train ``target.config`` on all training images for each seed, test, write, record.

    Args:
        target: From :func:`resolve_target`.
        settings: Seeds, output folder, data, device, exports.
        on_epoch: Called as ``on_epoch(seed, epoch, metrics)`` after every epoch.
        arrays: The data set, already loaded (``auto`` and ``--time`` load it first to
            measure); default: ``settings.data`` loaded here.
        say: Gets a line where a seed goes on from a stopped run (or was finished by one).

    Returns:
        Test accuracies per seed, mean ± std, the run folder and what metrics.json holds.

    Raises:
        DivergedError: the training loss of a seed became non-finite.
    """
    s = settings or RetrainSettings()
    if s.seeds < 1:
        raise ConfigError(f"seeds must be >= 1, but got {s.seeds}.")
    if s.epoch_images is not None and s.epoch_images < target.config.batch_size:
        raise ConfigError(f"epoch_images must be at least one batch "
                          f"({target.config.batch_size}), but got {s.epoch_images}.")
    start = time.perf_counter()
    cfg = target.config
    run_dir = Path(s.out) if s.out is not None else target.default_run_dir()
    if (run_dir / "metrics.json").exists():
        logger.warning("%s holds an earlier run: its files are overwritten", run_dir)
    runtime = resolve_runtime(s.device, s.precision)
    arrays = load_cifar10(s.data) if arrays is None else arrays
    # every training image (no validation part: the config was chosen by the search), and
    # the test set, used once per seed after the last epoch
    data = split(arrays, DataSpec(val_size=0, test=True), runtime.device)
    assert data.test_x is not None and data.test_y is not None
    train_size, test_size = len(data.train_y), len(data.test_y)
    seeds = [s.seed + i for i in range(s.seeds)]
    per_seed: list[dict[str, Any]] = []
    checkpoints = []
    for seed in seeds:
        ckpt = Checkpoint(run_dir / RESUME_DIR / f"seed-{seed}.pt",
                          {"config": cfg.to_dict(), "seed": seed, "train_size": train_size,
                           "test_size": test_size, "epoch_images": s.epoch_images},
                          every_s=s.checkpoint_every)
        checkpoints.append(ckpt)
        saved = ckpt.load() if s.resume else None
        job = _SeedJob(cfg, data, runtime, seed, s.epoch_images,
                       _seed_deadline(s, len(seeds) - len(per_seed)), say)
        first = seed == seeds[0]  # the run folder's model: the first seed, never the "best"
        if saved is not None and saved["extra"].get("done"):
            say(f"seed {seed}: trained and tested by an earlier run ({ckpt.path})")
            net, pred_t, summary = job.load_done(saved)
        else:
            net, logits, summary = job.run(on_epoch, ckpt, saved)
            pred_t = logits.argmax(1)
            if not first:  # its folder before its record: a record means the folder is there
                save_model_folder(run_dir / f"seed-{seed}", net, cfg,
                                  _seed_metrics(summary, target, arrays.source))
            job.save_done(ckpt, net if first else None, pred_t, summary)
        per_seed.append(summary)
        if first:
            assert net is not None  # the first seed's record holds its weights
            model, pred = net, pred_t.numpy()
    exports: dict[str, Any] | None = None
    if s.export:
        check = data.test_x[:MAX_MISCLASSIFIED].float().div(255)
        exports = export_model(model, cfg, run_dir, images=check).as_dict()
    _write_misclassified(run_dir, arrays.test_x, np.asarray(arrays.test_y), pred)
    about = {"source": arrays.source, "train_size": train_size, "test_size": test_size,
             "epoch_images": s.epoch_images, "validation": None,
             "epoch_images_run": per_seed[0].get("epoch_images_run"),
             "paced": s.deadline is not None,
             "test_set_used": "once per seed, after the last epoch"}
    metrics = _run_metrics(per_seed, target, model, about, runtime, exports)
    metrics["wall_seconds"] = time.perf_counter() - start
    save_model_folder(run_dir, model, cfg, metrics)
    atomic_write_text(run_dir / "MODEL.md", model_card(metrics))
    result = RetrainResult(run_dir, seeds, metrics["test_acc"], metrics["test_acc_mean"],
                           metrics["test_acc_std"], cfg.epochs, metrics["wall_seconds"],
                           train_size, test_size, runtime.describe(), metrics,
                           metrics["test_acc_single"], metrics["test_acc_single_mean"],
                           metrics["test_acc_single_std"])
    key = target.record_key
    if key is not None and target.study is not None:
        target.study.set_user_attr(key, result.record())
        logger.info("recorded %s on study %s", key, target.study.study_name)
    for ckpt in checkpoints:  # the run folder is complete: nothing left to resume
        ckpt.clear()
    return result


def _seed_deadline(s: RetrainSettings, remaining: int) -> float | None:
    """When this seed's training ends: an equal share of the training time left to the
    ``remaining`` seeds (this one included), after the test passes of all but the last."""
    if s.deadline is None:
        return None
    now = time.monotonic()
    left = s.deadline - now - (remaining - 1) * s.test_seconds
    return now + left / remaining


@dataclass
class _SeedJob:
    """One seed: fresh model, every epoch on all training images (or ``epoch_images`` of
    them, a new random subset each epoch), no validation; then the test set once. With a
    ``deadline`` the images of each epoch after the first are set to end the training on it."""

    cfg: TrainConfig
    data: SplitData
    runtime: Runtime
    seed: int
    epoch_images: int | None = None
    deadline: float | None = None
    say: Say = logger.info

    def run(self, on_epoch: OnEpoch | None, ckpt: Checkpoint,
            saved: State | None) -> tuple[nn.Module, Tensor, dict[str, Any]]:
        """Train (from ``saved``, a state ``ckpt`` wrote, when given), then test once."""
        cfg, seed = self.cfg, self.seed
        p = prepare(cfg, self.data, self.runtime, seed=seed, epoch_images=self.epoch_images)
        model, test_loader, loader = p.model, p.test_loader, p.train_loader
        assert test_loader is not None  # the data holds the test set (DataSpec(test=True))
        pacer = (None if self.deadline is None else
                 Pacer(loader, cfg.epochs, self.deadline - time.monotonic(),
                       clock=time.monotonic))
        images_run: list[int] = []
        if saved is not None:
            extra = saved["extra"]
            images_run = list(extra["images_run"])
            loader.max_batches = extra["max_batches"]
            if pacer is not None and extra.get("pacer"):
                pacer.train_s, pacer.batches_done = extra["pacer"]
            self.say(f"seed {seed}: going on {where(saved, cfg.epochs)}, from {ckpt.path}")

        def hook(epoch: int, m: EpochMetrics) -> None:
            batches = len(loader)
            images_run.append(loader.epoch_images)
            if pacer is not None:
                pacer.after_epoch(epoch, m.seconds, batches)
            if on_epoch is not None:
                on_epoch(seed, epoch, m)

        def keep(epoch: int, state: Callable[[], State]) -> None:
            ckpt.offer(epoch, state, {
                "images_run": images_run, "max_batches": loader.max_batches,
                "pacer": None if pacer is None else [pacer.train_s, pacer.batches_done]})

        result = train(model, cfg, loader, None, self.runtime, seed=seed, on_epoch_end=hook,
                       resume=None if saved is None else saved["train"], on_state=keep,
                       mid_epoch=True)
        logits, labels = predict_logits(model, test_loader, self.runtime, cfg.tta)
        single = (logits if cfg.tta == "none" else
                  predict_logits(model, test_loader, self.runtime)[0])
        curve = [{k: v for k, v in m.as_dict().items() if not k.startswith("val_")}
                 for m in result.history]
        summary = {"seed": seed, "epochs": curve, "train_seconds": result.seconds,
                   "epoch_images_run": images_run,
                   **seed_summary(logits, labels),
                   "test_acc_single": float((single.argmax(1) == labels).float().mean())}
        logger.info("seed %d: test acc %.4f (tta %s), %.4f (one view)", seed,
                    summary["test_acc"], cfg.tta, summary["test_acc_single"])
        return model, logits, summary

    def save_done(self, ckpt: Checkpoint, net: nn.Module | None, pred: Tensor,
                  summary: dict[str, Any]) -> None:
        """Record a tested seed (with its weights where ``net`` is given) for a re-run."""
        weights = None if net is None else {k: v.detach().cpu()
                                            for k, v in net.state_dict().items()}
        ckpt.save(self.cfg.epochs, {"net": weights},
                  {"done": True, "summary": summary, "pred": pred.cpu()})

    def load_done(self, saved: State) -> tuple[nn.Module | None, Tensor, dict[str, Any]]:
        """What :meth:`save_done` wrote: the model (None where no weights were kept), the
        test predictions and the seed's summary; the test set is not used again."""
        model = None
        if saved["train"]["net"] is not None:
            model = prepare(self.cfg, self.data, self.runtime, seed=self.seed).model
            model.load_state_dict(saved["train"]["net"])
            place(model, self.runtime)
        return model, saved["extra"]["pred"], dict(saved["extra"]["summary"])


def _run_metrics(
    per_seed: list[dict[str, Any]], target: RetrainTarget, model: nn.Module,
    data: dict[str, Any], runtime: Runtime, exports: dict[str, Any] | None,
) -> dict[str, Any]:
    """metrics.json of the run folder: the first seed's details plus every seed's results.

    ``epochs`` is the first seed's per-epoch curve (the form ``train`` writes and the report
    reads); every seed's curve is under ``curves``, the epoch budget under ``epoch_budget``.
    """
    cfg = target.config
    accs = [r["test_acc"] for r in per_seed]
    single = [r["test_acc_single"] for r in per_seed]
    return {
        **_seed_metrics(per_seed[0], target, data["source"]), "config": cfg.to_dict(),
        "seeds": [r["seed"] for r in per_seed], "model_seed": per_seed[0]["seed"],
        "test_acc": accs, "test_acc_mean": float(np.mean(accs)),
        "test_acc_std": _std(accs), "test_acc_single": single,
        "test_acc_single_mean": float(np.mean(single)), "test_acc_single_std": _std(single),
        "test_loss": [r["test_loss"] for r in per_seed],
        "train_seconds": [r["train_seconds"] for r in per_seed],
        "curves": {str(r["seed"]): r["epochs"] for r in per_seed},
        "epoch_budget": cfg.epochs, "epoch_budget_source": target.epochs_source,
        "n_params": count_params(model), "flops": count_flops(model, cfg.model.input_size),
        "data": data, "device": runtime.describe(), "versions": versions(), "exports": exports,
    }


def _std(values: list[float]) -> float:
    """Sample standard deviation (0 for one value)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _seed_metrics(summary: dict[str, Any], target: RetrainTarget, source: str) -> dict[str, Any]:
    """metrics.json of one seed's model folder (the run folder's adds the aggregates)."""
    return {
        "kind": "retrain", "target": target.label, "preset": target.preset,
        "study": target.study.study_name if target.study is not None else None,
        "trial": target.trial_number, **summary, "classes": list(CLASSES),
        "data_source": source,
    }


def _write_misclassified(
    run_dir: Path, images: np.ndarray, true: np.ndarray, pred: np.ndarray
) -> None:
    """The first :data:`MAX_MISCLASSIFIED` wrong test images (test order, not cherry-picked)."""
    wrong = np.flatnonzero(true != pred)[:MAX_MISCLASSIFIED]
    with atomic_path(run_dir / "misclassified.npz") as tmp:
        np.savez_compressed(tmp, images=np.asarray(images[wrong]),
                            true=true[wrong].astype(np.int64), pred=pred[wrong].astype(np.int64),
                            index=wrong.astype(np.int64))


def seed_summary(logits: Tensor, labels: Tensor) -> dict[str, Any]:
    """Test accuracy, loss, per-class accuracy and confusion matrix (rows: true) of one seed."""
    pred = logits.argmax(1)
    n = logits.shape[1]
    cm = np.bincount((labels * n + pred).numpy(), minlength=n * n).reshape(n, n)
    return {
        "test_acc": float((pred == labels).float().mean()),
        "test_loss": float(F.cross_entropy(logits.float(), labels)),
        "per_class_acc": (np.diag(cm) / np.maximum(cm.sum(1), 1)).tolist(),
        "confusion_matrix": cm.tolist(),
    }
