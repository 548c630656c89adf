"""``torch.compile`` once per architecture, reused by every later run of the same shape.

Compiling costs tens of seconds; a study or a multi-seed retrain builds a fresh model of the same
architecture again and again. :func:`prepare` keeps the compiled module of the last
:data:`MAX_ENTRIES` architectures, keyed on the config's model section (plus device and memory
format). When the same architecture comes back, the new model's weights are copied into the
cached module (its *twin*), which is trained in its place; the trainer copies the result back
into the caller's model at the end, so callers never see the difference.

Dynamo keeps its own per-code-object cache of at most ``torch._dynamo.config.cache_size_limit``
graphs; a search over many architectures can exceed it, after which it runs that code eagerly.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor, nn

from cifar_search.train.config import ModelConfig
from cifar_search.train.runtime import Runtime

logger = logging.getLogger(__name__)

MAX_ENTRIES = 8  # compiled architectures kept (each holds one copy of its weights)

_Key = tuple[str, str, bool]
_CACHE: OrderedDict[_Key, nn.Module] = OrderedDict()


def prepare(
    model: nn.Module, model_cfg: ModelConfig, runtime: Runtime
) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
    """The module to train and its forward: ``(model, model)`` unless ``runtime.compile``.

    Args:
        model: The caller's network, already on ``runtime.device``.
        model_cfg: Its architecture; the cache key.
        runtime: ``compile``, device and memory format.

    Returns:
        ``(net, forward)``: ``net`` holds the weights being trained (``model`` itself, or a
        cached twin holding a copy of ``model``'s weights) and ``forward`` is its compiled call.
    """
    if not runtime.compile:
        return model, model
    key = (repr(model_cfg), str(runtime.device), runtime.channels_last)
    cached = _CACHE.get(key)
    twin = getattr(cached, "_orig_mod", None)
    if cached is not None and isinstance(twin, nn.Module) and _same_shape(twin, model):
        if twin is not model:
            twin.load_state_dict(model.state_dict())
            for p_twin, p in zip(twin.parameters(), model.parameters(), strict=True):
                p_twin.requires_grad_(p.requires_grad)
        _CACHE.move_to_end(key)
        logger.debug("reusing the compiled %s", model_cfg.family)
        return twin, cached
    compiled: nn.Module = torch.compile(model)  # type: ignore[assignment]
    _CACHE[key] = compiled
    while len(_CACHE) > MAX_ENTRIES:
        _CACHE.popitem(last=False)
    return model, compiled


def clear() -> None:
    """Forget every compiled module (frees their weights)."""
    _CACHE.clear()


def _same_shape(a: nn.Module, b: nn.Module) -> bool:
    if type(a) is not type(b) or repr(a) != repr(b):  # repr lists every layer
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype for k in sa
    )
