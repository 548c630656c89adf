"""`--help` of every command answers without importing torch, optuna, pandas or numpy: the
heavy libraries load inside the command that needs them, never at registration."""

from __future__ import annotations

import json
import subprocess
import sys

from cifar_search.cli.main import COMMANDS

HEAVY = ("torch", "torchvision", "optuna", "pandas", "numpy", "plotly")

PROBE = f"""
import contextlib, io, json, sys
HEAVY = {HEAVY!r}
from cifar_search.cli.main import COMMANDS, main
out = {{}}
for argv in [["--help"]] + [[c.replace("_", "-"), "--help"] for c in COMMANDS]:
    with contextlib.redirect_stdout(io.StringIO()) as text:
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code
    out[" ".join(argv)] = [code, "usage:" in text.getvalue()]
out["heavy"] = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps(out))
"""


def test_help_of_every_command_imports_no_heavy_library() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result.pop("heavy") == []
    assert len(result) == len(COMMANDS) + 1
    for argv, (code, usage) in result.items():
        assert code == 0 and usage, argv


def test_sampler_and_pruner_choices_match_the_study_module() -> None:
    from cifar_search.cli import run
    from cifar_search.search import study

    assert run.SAMPLERS == study.SAMPLERS and run.PRUNERS == study.PRUNERS
