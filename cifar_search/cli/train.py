"""``cifar-search train``: train one preset (or config file) and write a model folder.

The output folder is a model folder (:mod:`cifar_search.train.checkpoint`): ``model.safetensors``,
``config.json`` and ``metrics.json`` (final and per-epoch metrics, config, seed, device, library
versions, wall time, data source and sizes). The test set is never touched here. While it
trains, ``resume/train.pt`` in the folder holds the training's state, written about once a
minute (:mod:`cifar_search.train.resume`), so the same command stopped goes on from it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cifar_search.cli._common import MAX_SEED, positive_int, seed_int
from cifar_search.cli._config import add_config_args, load_config, training_data
from cifar_search.names import check_out_dir, user_path

if TYPE_CHECKING:
    from cifar_search.train.config import TrainConfig
    from cifar_search.train.recipe import SplitData

RESUME_FILE = "resume/train.pt"  # in the --out folder, while a training is unfinished

EPILOG = """\
--epochs replaces the preset's epoch budget, and the learning-rate schedule spans the new one.
--config takes a JSON object in TrainConfig.to_dict() form, whole or partial, as a file or
inline: its keys replace the preset's (or the defaults without --preset). --set KEY=VALUE
(repeatable) then sets one dotted field: --set optim.lr=0.1 --set augment.cutout=8.

Stopped (Ctrl-C, a lost machine), the same command goes on where the training was: its state
is written to resume/ in the --out folder about once a minute (mid-epoch too), and a re-run
with the same config, seed and data continues from the last write (--restart: from the start).

examples:
  cifar-search train --preset davidnet --out runs/davidnet
  cifar-search train --preset rdfia-alexnet --train-subset 10000 --epochs 5 --out runs/rdfia
  cifar-search train --config my.json --device cpu --out runs/mine
  cifar-search train --preset fast94 --config '{"lookahead": 0}' --set optim.lr=1.2
"""


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train one preset or config; writes a model folder",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--batch-size", type=positive_int, help="images per step (overrides)")
    p.add_argument("--seed", type=seed_int, default=0,
                   help=f"seed of init, shuffling and augmentation, in [0, {MAX_SEED}]")
    p.add_argument("--out", required=True, metavar="DIR", help="model folder to write")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--restart", action="store_true",
                   help="train from the start, even where --out holds a stopped run of this "
                        "training (by default it goes on from where it stopped)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def resume_meta(cfg: TrainConfig, seed: int, data: SplitData) -> dict[str, Any]:
    """What makes a resume file this training's: the config, the seed and the split's sizes
    (not the data's path: the same file moved is the same data)."""
    about = data.describe()
    return {"config": cfg.to_dict(), "seed": seed, "train_size": about["train_size"],
            "val_size": about["val_size"]}


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cifar_search.train.checkpoint import save_model_folder
    from cifar_search.train.models import count_params
    from cifar_search.train.recipe import prepare
    from cifar_search.train.resume import Checkpoint, State, where
    from cifar_search.train.runtime import configure_cpu_threads, resolve_runtime, versions
    from cifar_search.train.trainer import EpochMetrics, train

    start = time.perf_counter()
    cfg, name = load_config(args.preset, args.config, args.epochs, args.batch_size, args.sets)
    check_out_dir("--out", args.out)  # before training, not after it
    configure_cpu_threads()
    runtime = resolve_runtime(args.device, args.precision, compile=args.compile)
    data = training_data(args, runtime.device)
    prepared = prepare(cfg, data, runtime, seed=args.seed)
    model = prepared.model
    ckpt = Checkpoint(Path(args.out) / RESUME_FILE, resume_meta(cfg, args.seed, data))
    saved = None if args.restart else ckpt.load()
    if saved is not None:
        print(f"going on {where(saved, cfg.epochs)}, from {ckpt.path}", file=sys.stderr)
    bar = tqdm(total=cfg.epochs, initial=0 if saved is None else saved["epoch"], unit="epoch",
               file=sys.stderr, disable=args.no_progress, desc=name, dynamic_ncols=True)

    def on_epoch_end(epoch: int, m: EpochMetrics) -> None:
        bar.update(1)
        bar.set_postfix_str(
            f"train {100 * m.train_acc:.1f}% val {100 * m.val_acc:.1f}% loss {m.train_loss:.3f}"
        )

    def keep(epoch: int, state: Callable[[], State]) -> None:
        ckpt.offer(epoch, state)

    try:
        result = train(model, cfg, prepared.train_loader, prepared.val_loader, runtime,
                       seed=args.seed, on_epoch_end=on_epoch_end,
                       resume=None if saved is None else saved["train"],
                       on_state=keep, mid_epoch=True)
    finally:
        bar.close()
    metrics = {
        "preset": name,
        "final": {k: v for k, v in result.as_dict().items() if k != "history"},
        "epochs": [m.as_dict() for m in result.history],
        "config": cfg.to_dict(),
        "seed": args.seed,
        "n_params": count_params(model),
        "data": data.describe(),
        "wall_seconds": time.perf_counter() - start,
        "device": runtime.describe(),
        "versions": versions(),
    }
    with user_path("--out", args.out):
        out = save_model_folder(args.out, model, cfg, metrics)
    ckpt.clear()  # the model folder is complete: nothing left to resume
    print(f"{name}: val acc {100 * result.final_val_acc:.2f}% (epoch {result.final_epoch}), "
          f"best {100 * result.best_val_acc:.2f}% at epoch {result.best_epoch}, "
          f"{metrics['wall_seconds']:.1f} s; model folder {out}")
    return 0
