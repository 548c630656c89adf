"""``cifar-search retrain``: a trial's (or preset's) config on all training images, tested once.

See :mod:`cifar_search.search.retrain` for what changes from the search (all training images, a
longer epoch budget, no validation set and so no early stopping, the test set evaluated once per
seed at the end) and what the run folder holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from cifar_search.cli._common import (
    MAX_SEED,
    add_data_args,
    add_device_args,
    positive_int,
    process_age,
    seed_int,
)

if TYPE_CHECKING:
    from cifar_search.search.retrain import RetrainResult

EPILOG = """\
The epoch budget defaults to the study's retrain_epochs (budget gpu 40, cpu 15, smoke 2) or,
with --preset, to the preset's own epochs; the schedule spans it. Test accuracy is measured once
per seed after the last epoch; with --seeds K it is reported as mean ± sample std.

--time T instead of --epochs: one training that fills T, everything included (the interpreter,
the data, this config's speed on this device from the throughput cache or a few seconds of
batches, both test passes, the exports). The epochs are planned from that speed and paced after
each one to end on time, the schedule spanning them; the plan is printed first. With --seeds K
the seeds train one after the other, each on a K-th of the training time, so mean ± std comes
inside T too.

Stopped (Ctrl-C, a lost machine), the same command goes on where the training was: each seed's
state is written to resume/ in the run folder about once a minute (mid-epoch too), and a
re-run with the same config, seed and data continues from the last write (--restart: from the
start). With --time, the epochs left are fitted into the T the re-run is given.

The run folder (default runs/<study>/trial-<n>, runs/<study>/preset-<name>, or
runs/presets/preset-<name> without --study) holds model.safetensors, config.json, metrics.json,
misclassified.npz, model.pt2, model.onnx and MODEL.md; seeds after the first in seed-<s>/.
With test-time augmentation (the config's tta: flip, flip_translate) the test accuracy is
printed twice: with TTA (the headline; model_tta.onnx and model_tta.pt2 reproduce it) and with
one view per image (model.onnx and model.pt2).

examples:
  cifar-search retrain best                          # the best trial of study 'cifar'
  cifar-search retrain 12 --study small --seeds 3    # trial 12, three seeds
  cifar-search retrain --preset rdfia-alexnet --epochs 10 --device cpu
  cifar-search retrain --preset fast94 --time 10m     # the epochs that fill 10 minutes here
  cifar-search retrain best --time 2h
  cifar-search retrain --preset davidnet --study cifar   # also recorded on the study
"""


def register(sub: Any) -> None:
    p = sub.add_parser("retrain", help="retrain a trial or preset on all data; test; export",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trial", nargs="?", metavar="best|N", help="the best trial or a trial number")
    p.add_argument("--preset", metavar="NAME", help="a named preset instead of a trial")
    p.add_argument("--study", help="study name (default: cifar; with --preset: none, so the "
                   "result is recorded nowhere)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///studies/<study>.db)")
    p.add_argument("--epochs", type=positive_int, help="epoch budget (default: see below)")
    p.add_argument("--time", metavar="T", help="wall-clock budget instead of --epochs: 600, "
                   "90s, 10m, 2h (see below)")
    p.add_argument("--seeds", type=positive_int, default=1,
                   help="independent trainings, seeds S..S+K-1 (default: 1)")
    p.add_argument("--seed", type=seed_int, default=0,
                   help=f"first seed S, in [0, {MAX_SEED}] (default: 0)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: see below)")
    p.add_argument("--no-export", action="store_true",
                   help="skip model.pt2 and model.onnx (and model_tta.*)")
    p.add_argument("--restart", action="store_true",
                   help="train from the start, even where the run folder holds a stopped run "
                   "of this training (by default it goes on from where it stopped)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON (accuracies as fractions)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="set one dotted TrainConfig field, e.g. optim.lr=0.1 (repeatable); "
                   "the result is then not recorded on the study")
    add_data_args(p)
    add_device_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic() - process_age()
    from tqdm import tqdm

    from cifar_search.errors import ConfigError, DivergedError
    from cifar_search.search.auto_plan import parse_duration
    from cifar_search.search.retrain import RetrainSettings, resolve_target, retrain
    from cifar_search.search.timed import within
    from cifar_search.train.runtime import configure_cpu_threads
    from cifar_search.train.trainer import EpochMetrics

    seconds = None if args.time is None else parse_duration(args.time)
    if seconds is not None and args.epochs is not None:
        raise ConfigError(f"give --epochs or --time, not both (got --epochs {args.epochs} and "
                          f"--time {args.time}).")
    # with --time the epochs come from T below; 1 only skips the study's retrain budget
    target = resolve_target(args.trial, preset=args.preset, study=args.study,
                            storage=args.storage, epochs=1 if seconds else args.epochs)
    if args.sets:  # another config than the study's: trained and tested, not recorded on it
        import dataclasses

        from cifar_search.cli._config import apply_sets

        target = dataclasses.replace(
            target, config=apply_sets(target.config, args.sets), study=None,
            label=f"{target.label} with --set {' '.join(args.sets)}")
    settings = RetrainSettings(seeds=args.seeds, seed=args.seed, out=args.out, data=args.data,
                               device=args.device, precision=args.precision,
                               export=not args.no_export, resume=not args.restart)
    out = sys.stderr if args.json else sys.stdout
    configure_cpu_threads()
    arrays = None
    if seconds is not None:
        timed = within(target, settings, seconds, started=started)
        target, settings, arrays = timed.target, timed.settings, timed.arrays
        print(f"--time {seconds:.0f} s: {timed.describe(seconds, time.monotonic() - started)}",
              file=out)
    epochs = target.config.epochs
    print(f"retrain {target.label} ({target.config.model.family}): {epochs} epochs "
          f"({target.epochs_source}) x {args.seeds} seed(s) on all training images, "
          "no validation set, test set once per seed at the end", file=out)
    bar = tqdm(total=epochs * args.seeds, unit="epoch", file=sys.stderr,
               disable=args.no_progress, dynamic_ncols=True, desc="retrain")

    def on_epoch(seed: int, epoch: int, m: EpochMetrics) -> None:
        bar.update(1)
        bar.set_postfix_str(f"seed {seed} epoch {epoch}/{epochs} train {100 * m.train_acc:.1f}% "
                            f"loss {m.train_loss:.3f}")

    try:
        result = retrain(target, settings, on_epoch=on_epoch, arrays=arrays,
                         say=lambda line: bar.write(line, file=out))
    except DivergedError as exc:
        bar.close()
        print(f"cifar-search retrain: error: training diverged: {exc}", file=sys.stderr)
        return 1
    bar.close()
    if args.json:  # the result as a script reads it: fractions, the run folder, the record
        print(json.dumps({**result.record(), "target": target.label,
                          "record_key": target.record_key, "device": result.device}, indent=2))
        return 0
    print(_result_line(result, target.config.tta))
    budget = ("" if seconds is None else
              f"; {time.monotonic() - started:.0f} s of the {seconds:.0f} s budget spent")
    print(f"device {result.device['device_name']} ({result.device['precision']}), wall time "
          f"{result.wall_seconds / 60:.1f} min ({result.wall_seconds:.0f} s){budget}")
    exports = result.metrics.get("exports") or {}
    for note in exports.get("notes", []):
        print(f"note: {note}")
    print(f"run folder {result.run_dir} (MODEL.md explains it)")
    if target.record_key is not None and target.study is not None:
        print(f"recorded as {target.record_key} on study {target.study.study_name!r}")
    return 0


def _result_line(result: RetrainResult, tta: str) -> str:
    """Both test accuracies: with the config's TTA (the headline) and with one view per image."""
    several = len(result.seeds) > 1

    def acc(mean: float, std: float) -> str:
        return f"{100 * mean:.2f}%" + (f" ± {100 * std:.2f}" if several else "")

    if tta == "none":
        per_seed = ", ".join(f"seed {s} {100 * a:.2f}%"
                             for s, a in zip(result.seeds, result.test_acc, strict=True))
        head = f"{acc(result.test_acc_mean, result.test_acc_std)} (one view, no TTA)"
    else:
        per_seed = ", ".join(
            f"seed {s} {100 * a:.2f}% / {100 * b:.2f}%"
            for s, a, b in zip(result.seeds, result.test_acc, result.test_acc_single,
                               strict=True))
        single = acc(result.test_acc_single_mean, result.test_acc_single_std)
        files = bool(result.metrics.get("exports"))
        head = (f"{acc(result.test_acc_mean, result.test_acc_std)} with TTA {tta}"
                f"{' (model_tta.onnx)' if files else ''}, {single} one view"
                f"{' (model.onnx)' if files else ''}")
    spread = (f" over {len(result.seeds)} seeds" if several
              else " (1 seed: no spread; --seeds K for mean ± std)")
    return (f"test accuracy {head}{spread} ({per_seed}); {result.test_size:,} test images, "
            f"trained on {result.train_size:,}")
