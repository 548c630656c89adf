"""``cifar-search lr-find``: the learning-rate range test on a preset's recipe.

Prints the suggested learning rate (steepest descent of the smoothed loss, see
:mod:`cifar_search.train.lr_find`) and a short summary of the curve; ``--plot`` writes it as HTML.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from cifar_search.cli._common import MAX_SEED, positive_float, positive_int, seed_int
from cifar_search.cli._config import add_config_args
from cifar_search.names import check_out_file, user_path

EPILOG = """\
The learning rate grows exponentially from --start-lr to --end-lr over --steps batches of the
preset's optimiser, augmentation and batch size; the model is restored afterwards. Use the
suggestion as the preset's peak lr (optim.lr), e.g. in a --config file for `cifar-search train`.

examples:
  cifar-search lr-find --preset era-custom-resnet --plot lr.html
  cifar-search lr-find --preset rdfia-alexnet --device cpu --train-subset 5000 --steps 60
"""


def register(sub: Any) -> None:
    p = sub.add_parser("lr-find", help="learning-rate range test for a preset", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--batch-size", type=positive_int, help="images per step (overrides)")
    p.add_argument("--start-lr", type=positive_float, default=1e-7,
                   help="first lr, > 0 (default: 1e-7)")
    p.add_argument("--end-lr", type=positive_float, default=10.0,
                   help="last lr, > --start-lr (default: 10)")
    p.add_argument("--steps", type=positive_int, default=100, help="batches (default: 100)")
    p.add_argument("--seed", type=seed_int, default=0,
                   help=f"seed in [0, {MAX_SEED}] (default: 0)")
    p.add_argument("--plot", metavar="FILE.html", help="write the curve (plotly HTML)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cifar_search.cli._config import load_config, training_data
    from cifar_search.train.lr_find import LRFindConfig, lr_find, plot
    from cifar_search.train.recipe import prepare
    from cifar_search.train.runtime import configure_cpu_threads, resolve_runtime

    cfg, name = load_config(args.preset, args.config, args.epochs, args.batch_size, args.sets)
    if args.plot:
        check_out_file("--plot", args.plot)  # before the test runs, not after it
    configure_cpu_threads()
    runtime = resolve_runtime(args.device, args.precision)
    prepared = prepare(cfg, training_data(args, runtime.device), runtime, seed=args.seed)
    settings = LRFindConfig(start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.steps)
    result = lr_find(prepared.model, cfg, prepared.train_loader, runtime, settings=settings,
                     seed=args.seed)
    print(f"{name}: suggested lr {result.suggestion:.3g} ({result.method}); "
          f"preset lr {cfg.optim.lr:.3g} ({cfg.optim.optimizer}, batch {cfg.batch_size})")
    print(f"curve: {len(result.lrs)} steps, lr {result.lrs[0]:.2g} .. {result.lrs[-1]:.2g}, "
          f"min loss {min(result.losses):.3f} at lr {result.min_loss_lr:.3g}"
          + (", stopped at divergence" if result.diverged else ""))
    for lr, loss in _samples(result.lrs, result.losses):
        print(f"  lr {lr:9.2e}  loss {loss:.4f}")
    if args.plot:
        with user_path("--plot", args.plot):
            print(f"plot: {plot(result, args.plot)}")
    return 0


def _samples(lrs: list[float], losses: list[float]) -> list[tuple[float, float]]:
    """The first point of every decade of learning rate, for a text summary of the curve."""
    out: list[tuple[float, float]] = []
    last = -math.inf
    for lr, loss in zip(lrs, losses, strict=True):
        decade = math.floor(math.log10(lr))
        if decade > last:
            out.append((lr, loss))
            last = decade
    return out
