"""cifar-search: find the best CIFAR-10 classifier a compute budget can buy.

``search`` and ``load_model`` are the Python API (:mod:`cifar_search.api`, which also has
``retrain`` and ``auto``); they import torch and Optuna only when called.
"""

from __future__ import annotations

from cifar_search.api import load_model, search
from cifar_search.config import AugmentConfig, ModelConfig, OptimConfig, TrainConfig

__version__ = "0.1.0"

__all__ = ["AugmentConfig", "ModelConfig", "OptimConfig", "TrainConfig", "__version__",
           "load_model", "search"]
