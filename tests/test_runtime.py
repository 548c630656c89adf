"""Device and precision are decided once, from what measured fastest on the hardware found."""

from __future__ import annotations

import pytest
import torch

from cifar_search.errors import ConfigError
from cifar_search.train import runtime
from cifar_search.train.runtime import cpu_flags, cpu_has_bf16_units, resolve_runtime


@pytest.mark.parametrize("units", [True, False])
def test_cpu_default_follows_the_bf16_units(monkeypatch: pytest.MonkeyPatch, units: bool) -> None:
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: units)
    rt = resolve_runtime("cpu")
    # with bf16 units: bf16 autocast + channels_last (2.06x fp32 on the reference CPU)
    assert rt.amp_dtype == (torch.bfloat16 if units else None)
    assert rt.channels_last is units
    assert rt.describe()["precision"] == ("bfloat16" if units else "fp32")


def test_asked_for_precision_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: True)
    rt = resolve_runtime("cpu", "fp32")
    assert rt.amp_dtype is None and rt.channels_last is False
    monkeypatch.setattr(runtime, "cpu_has_bf16_units", lambda: False)
    assert resolve_runtime("cpu", "bf16").amp_dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="'fp16'"):
        resolve_runtime("cpu", "fp16")  # type: ignore[arg-type]


def test_cuda_turns_on_the_cudnn_autotuner_and_the_cpu_leaves_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Decided without a GPU: ``torch.device("cuda")`` is only a name until a tensor uses it."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    resolve_runtime("cpu")
    assert torch.backends.cudnn.benchmark is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    rt = resolve_runtime("cuda")
    assert rt.device.type == "cuda" and rt.amp_dtype == torch.bfloat16 and rt.channels_last
    assert torch.backends.cudnn.benchmark is True


def test_this_machine_flags_are_read() -> None:
    flags = cpu_flags()
    assert cpu_has_bf16_units() == bool({"avx512_bf16", "amx_bf16"} & flags)
    if flags:  # Linux: the common flags are there
        assert "fpu" in flags or "sse2" in flags or "fp" in flags
