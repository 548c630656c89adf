"""train.throughput: a real measurement of a small config, and the per-device cache."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cifar_search.train import throughput
from cifar_search.train.config import ModelConfig, TrainConfig
from cifar_search.train.runtime import resolve_runtime
from cifar_search.train.throughput import Rate, RateCache, measure, tta_views

TINY = TrainConfig(model=ModelConfig(family="plain_cnn", width=8, depth=(1, 1, 1)),
                   batch_size=32, epochs=3)


def probe(n: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


def test_measure_runs_the_real_trainer_and_gives_finite_rates() -> None:
    x, y = probe(50)  # fewer images than a timed pass needs: the pool repeats them
    rate = measure(TINY, resolve_runtime("cpu", "fp32"), x, y)
    assert math.isfinite(rate.train) and rate.train > 0
    assert math.isfinite(rate.eval) and rate.eval > 0
    assert rate.train_seconds(1000, 2) == 2000 / rate.train
    assert rate.eval_seconds(100, views=tta_views("flip_translate")) == 600 / rate.eval


def test_cache_hits_per_config_and_survives_a_corrupt_file(tmp_path: Path) -> None:
    runtime = resolve_runtime("cpu", "fp32")
    path = tmp_path / "cache" / throughput.CACHE_NAME
    cache = RateCache(path)
    assert cache.get(TINY, runtime) is None
    cache.put(TINY, runtime, Rate(123.0, 456.0))
    again = RateCache(path)
    assert again.get(TINY, runtime) == Rate(123.0, 456.0)
    assert again.get(TINY.replace(batch_size=64), runtime) is None  # the batch is in the key
    assert again.rate(TINY, runtime, *probe(), fresh=False) == (Rate(123.0, 456.0), False)
    path.write_text("{not json", encoding="utf-8")
    assert RateCache(path).get(TINY, runtime) is None
    rate, fresh = RateCache(path).rate(TINY, runtime, *probe())
    assert fresh and rate.train > 0
    assert len(json.loads(path.read_text(encoding="utf-8"))) == 1


def test_a_rate_measured_while_other_processes_were_busy_is_used_but_not_cached(
        tmp_path: Path) -> None:
    runtime = resolve_runtime("cpu", "fp32")
    path = tmp_path / throughput.CACHE_NAME
    busy = RateCache(path, watch=lambda: lambda: 0.9)  # others took 90% of the CPUs
    rate, fresh = busy.rate(TINY, runtime, *probe())
    assert fresh and rate.train > 0
    assert busy.get(TINY, runtime) is None and not path.exists()
    for others in (throughput.BUSY_LIMIT, None):  # at the limit, or not measurable: cached
        quiet = RateCache(path, watch=lambda o=others: lambda: o)  # type: ignore[misc]
        assert quiet.rate(TINY, runtime, *probe(), fresh=True)[1]
        assert RateCache(path).get(TINY, runtime) is not None
        path.unlink()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_cpu_watch_sees_other_processes_keep_the_cpus_busy() -> None:
    """One busy-looping child per CPU of this process for ~2 s: they hold (nearly) all of them,
    whatever else the machine runs, so the share seen is far above the cache's limit."""
    n = len(os.sched_getaffinity(0))
    loop = "import time\nt = time.time()\nwhile time.time() - t < 2.5: pass"
    children = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(n)]
    try:
        time.sleep(0.3)  # the children are running
        others = throughput.cpu_watch()
        time.sleep(1.5)
        share = others()
    finally:
        for c in children:
            c.wait()
    if share is None:
        pytest.skip("/proc/stat does not list this process's CPUs here")
    assert share > 2 * throughput.BUSY_LIMIT
