"""``cifar-search dashboard``: optuna-dashboard on the study's storage (read-only use)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cifar_search.cli import _study
from cifar_search.cli._common import add_study_args, port_int


def register(sub: Any) -> None:
    p = sub.add_parser("dashboard", help="start optuna-dashboard on the study")
    add_study_args(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    p.add_argument("--port", type=port_int, default=8080,
                   help="port in [0, 65535] (default: 8080)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    from cifar_search.search.launch import _artifacts_for
    from cifar_search.search.storage import open_storage

    url = _study.storage_url(args)
    _study.load(args)  # fail with a clear line if the study does not exist
    storage = open_storage(url, create=False, heartbeat_interval=None)
    artifacts = _artifacts_for(url, args.study)
    store = FileSystemArtifactStore(str(artifacts)) if artifacts.exists() else None
    print(f"optuna-dashboard on http://{args.host}:{args.port} ({url}); Ctrl-C to stop",
          file=sys.stderr)
    run_server(storage, host=args.host, port=args.port, artifact_store=store)
    return 0
