"""``cifar-search predict``: classify image files with a model folder.

Images of any size are converted to RGB and the whole image is resized to 32 x 32 (bilinear
with antialias, no crop); see :mod:`cifar_search.train.predict`. By default the logits are averaged
over the model's test-time augmentation views, as the headline test accuracy was measured.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cifar_search.cli._common import positive_int

EPILOG = """\
examples:
  cifar-search predict --model runs/cifar/trial-12 cat.jpg dog.png
  cifar-search predict --model runs/presets/preset-davidnet --top 1 --json photos/*.jpg
  cifar-search predict --model runs/cifar/trial-12 --tta none cat.jpg   # like model.onnx
"""


def register(sub: Any) -> None:
    p = sub.add_parser("predict", help="classify images with a trained model folder",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="DIR",
                   help="model folder (model.safetensors + config.json) from train or retrain")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, ... of any size")
    p.add_argument("--top", type=positive_int, default=3, help="classes shown per image (3)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tta", choices=("model", "none"), default="model",
                   help="model: average the views of the model's test-time augmentation (its "
                   "config's tta, as the headline test accuracy and model_tta.onnx); none: one "
                   "view per image, as model.onnx (default: model)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cifar_search.train.predict import load_predictor

    predictor = load_predictor(args.model, tta=args.tta)
    results = predictor.predict_images(args.images, top=args.top)
    if args.json:
        out = [{"image": path, "top": [{"class": c, "prob": p} for c, p in ranked]}
               for path, ranked in zip(args.images, results, strict=True)]
        print(json.dumps(out, indent=2))
        return 0
    for path, ranked in zip(args.images, results, strict=True):
        print(f"{path}: " + ", ".join(f"{c} {100 * p:.1f}%" for c, p in ranked))
    return 0
