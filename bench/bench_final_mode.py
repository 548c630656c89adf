"""Which training ``auto`` should ship after a search: the top rung's, or the winner retrained.

Issue: "either the top rung is the final training (the 45,000 / 5,000 split kept, the model
chosen on validation is the one shipped), or the winner of the rung below is trained once on
all 50,000 images with its schedule over the final budget. Measure both and keep the one that
gives more test accuracy at equal T."

At equal T the two differ only after the rung below the top, and in two ways: how much training
the shipped model gets and on how many images. With ``auto``'s plan (30% of T to three rungs of
about equal time, 70% to the final training; two finalists at the top rung):

- ``retrain`` (what ``auto`` does): the top rung's two trials (10% of T) pick the winner, which
  is then trained on all 50,000 images for the final share (70% of T). The top rung's models are
  thrown away.
- ``top-rung``: the top rung *is* the final training. Its two finalists share the top rung's and
  the final share's time (80% of T): 40% of T each, on the 45,000-image split, and the one with
  the better validation accuracy is shipped. Nothing is thrown away.

This script trains one config for ``--seconds`` seconds in either way, through the library's own
pieces (the loaders, :class:`~cifar_search.train.pacing.Pacer`, the trainer, test-time
augmentation: what ``retrain``'s seed job runs), and measures test accuracy once at the end, so
the two can be compared at the seconds that the plan's proportions give them (``retrain`` 70 /
``top-rung`` 40). Both fill their seconds the same way ``auto`` does: the epochs of
:func:`~cifar_search.search.auto_plan.fill` from this device's measured rate, paced after each
epoch to end on time.

    python bench/bench_final_mode.py --mode top-rung --seconds 900 --data cifar10.npz
    python bench/bench_final_mode.py --mode retrain --seconds 1575 --data cifar10.npz
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cifar_search.search import auto_plan  # noqa: E402
from cifar_search.search.auto_search import rung_data  # noqa: E402
from cifar_search.search.space import DEFAULT_SPACE, rebuild_in  # noqa: E402
from cifar_search.search.timed import probe  # noqa: E402
from cifar_search.train.data import load_cifar10  # noqa: E402
from cifar_search.train.evaluation import evaluate, predict_logits  # noqa: E402
from cifar_search.train.pacing import Pacer  # noqa: E402
from cifar_search.train.presets import get_preset  # noqa: E402
from cifar_search.train.recipe import DataSpec, prepare, split  # noqa: E402
from cifar_search.train.runtime import resolve_runtime, versions  # noqa: E402
from cifar_search.train.throughput import RateCache  # noqa: E402
from cifar_search.train.trainer import EpochMetrics, train  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("top-rung", "retrain"), required=True)
    ap.add_argument("--seconds", type=float, required=True, help="of training")
    ap.add_argument("--preset", default="fast94")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, help="append the result as one JSON line")
    a = ap.parse_args()

    started = time.monotonic()
    load_before = os.getloadavg()[0]
    runtime = resolve_runtime(a.device, "auto")
    arrays = load_cifar10(a.data)
    n = len(arrays.train_y)
    # the top rung's data (the fixed validation split held out) or all training images
    spec = (DataSpec(val_size=rung_data(None, n).val_size, test=True) if a.mode == "top-rung"
            else DataSpec(val_size=0, test=True))
    data = split(arrays, spec, runtime.device)
    cfg = rebuild_in(get_preset(a.preset).config, DEFAULT_SPACE)  # as auto trains it
    rate, fresh = RateCache().rate(cfg, runtime, *probe(arrays, runtime.device))
    images = len(data.train_y)
    epochs, epoch_images = auto_plan.fill(a.seconds, rate, images, cfg.batch_size)
    cfg = cfg.replace(epochs=epochs)
    print(f"{a.mode}: {a.preset} x {epochs} epochs of {epoch_images or images:,} of {images:,} "
          f"images, paced to {a.seconds:.0f} s ({'measured' if fresh else 'cached'} "
          f"{rate.train:,.0f} images/s)", flush=True)

    p = prepare(cfg, data, runtime, seed=a.seed, epoch_images=epoch_images)
    loader = p.train_loader
    pacer = Pacer(loader, epochs, a.seconds, clock=time.monotonic)
    images_run: list[int] = []

    def hook(epoch: int, m: EpochMetrics) -> None:
        images_run.append(loader.epoch_images)
        pacer.after_epoch(epoch, m.seconds, len(loader))
        print(f"  epoch {epoch}/{epochs}: {images_run[-1]:,} images, {m.seconds:.0f} s, "
              f"train loss {m.train_loss:.3f}", flush=True)

    t0 = time.monotonic()
    result = train(p.model, cfg, loader, None, runtime, seed=a.seed, on_epoch_end=hook)
    train_s = time.monotonic() - t0
    val_acc = None
    if p.val_loader is not None:  # what the top rung scores a finalist by
        val_acc = evaluate(p.model, p.val_loader, runtime)[1]
    assert p.test_loader is not None
    logits, labels = predict_logits(p.model, p.test_loader, runtime, cfg.tta)
    single, _ = predict_logits(p.model, p.test_loader, runtime)
    out = {
        "mode": a.mode, "preset": a.preset, "seed": a.seed, "seconds": a.seconds,
        "train_images": images, "epochs": epochs, "epoch_images": epoch_images,
        "images_run": sum(images_run), "train_s": round(train_s, 1),
        "wall_s": round(time.monotonic() - started, 1), "rate": [rate.train, rate.eval],
        "val_acc": val_acc,
        "test_acc": float((logits.argmax(1) == labels).float().mean()),
        "test_acc_single": float((single.argmax(1) == labels).float().mean()),
        "final_train_loss": result.history[-1].train_loss,
        "device": runtime.describe(), "versions": versions(), "load_before": load_before,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(out), flush=True)
    if a.json is not None:
        with a.json.open("a", encoding="utf-8") as f:
            f.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
