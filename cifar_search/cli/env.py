"""``cifar-search env``: what a bug report needs: versions, the device and its bf16 support,
where the data is (or would be downloaded), whether the storage opens, the throughput cache."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cifar_search.cli._common import add_data_args, add_study_args


def register(sub: Any) -> None:
    p = sub.add_parser("env", help="versions, device, data and storage: for bug reports")
    add_study_args(p)
    add_data_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = collect(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    width = max(map(len, report))
    for key, value in report.items():
        text = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) \
            else str(value)
        print(f"{key:<{width}}  {text}")
    return 0


def collect(args: argparse.Namespace) -> dict[str, Any]:
    import os

    import torch

    from cifar_search.errors import CifarSearchError
    from cifar_search.search.storage import default_url, open_storage, sqlite_path
    from cifar_search.train.data import ENV_VAR, resolve_data_path
    from cifar_search.train.runtime import cpu_flags, cpu_has_bf16_units, resolve_runtime, versions
    from cifar_search.train.throughput import RateCache

    runtime = resolve_runtime("auto", "auto")
    where = resolve_data_path(args.data)
    data = (f"{where} (found)" if where.exists() else
            f"{where} (missing: downloaded there when online, or pass --data / {ENV_VAR})")
    url = args.storage or default_url(args.study)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        storage = f"{url}: no file yet (created by the first run)"
    else:
        try:
            open_storage(url, create=False, heartbeat_interval=None, connect_seconds=5.0)
            storage = f"{url}: opens"
        except CifarSearchError as exc:
            storage = f"{url}: {exc}"
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "versions": versions(),
        "device": runtime.describe(),
        "cuda devices": ", ".join(gpus) or "none",
        "cpu bf16 units": ", ".join(f for f in ("avx512_bf16", "amx_bf16", "amx_tile")
                                    if f in cpu_flags()) or "none",
        "cpu bf16 autocast": cpu_has_bf16_units(),
        "cpu threads": f"{torch.get_num_threads()} of {os.cpu_count()} cores",
        "data": data,
        "storage": storage,
        "throughput cache": str(RateCache.default_path()),
    }
