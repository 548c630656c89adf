"""Model families, the registry and model statistics.

``create_model(ModelConfig) -> nn.Module`` takes float [0, 1] images ``(B, 3, 32, 32)`` and
returns logits ``(B, num_classes)``; ``list_models()`` names the families. Importing this
package registers every family.
"""

from __future__ import annotations

from cifar_search.train.models import (  # noqa: F401  (importing a family registers it)
    airbench,
    alexnet,
    plain_cnn,
    resnet,
    resnet9,
    shake_shake,
    vgg,
    wide_resnet,
)
from cifar_search.train.models.common import Classifier, DataInitClassifier, Preprocess
from cifar_search.train.models.registry import (
    create_model,
    default_config,
    get_builder,
    list_models,
    register_model,
    validate_model_config,
)
from cifar_search.train.models.stats import (
    count_flops,
    count_params,
    count_trainable_params,
    model_cost,
    summary,
)

__all__ = [
    "Classifier",
    "DataInitClassifier",
    "Preprocess",
    "count_flops",
    "count_params",
    "count_trainable_params",
    "create_model",
    "default_config",
    "get_builder",
    "list_models",
    "model_cost",
    "register_model",
    "summary",
    "validate_model_config",
]
