"""cifar-search: find the best CIFAR-10 classifier a compute budget can buy."""

from __future__ import annotations

from cifar_search.config import AugmentConfig, ModelConfig, OptimConfig, TrainConfig

__version__ = "0.1.0"

__all__ = ["AugmentConfig", "ModelConfig", "OptimConfig", "TrainConfig", "__version__"]
