"""atomic: a writer killed at any moment leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cifar_search.atomic import TMP_MARK, atomic_path, atomic_write_bytes, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
SIZE = 8 << 20  # bytes per version: long enough that most kills land inside a write
KILLS = 12

# writes version 1, 2, ... of `path` forever, each SIZE bytes of one value (version % 250 + 1)
WRITER = f"""
import sys
from cifar_search.atomic import atomic_path, atomic_write_bytes
path, version = sys.argv[1], 0
print("writing", flush=True)
while True:
    version += 1
    data = bytes([version % 250 + 1]) * {SIZE}
    if version % 2:
        atomic_write_bytes(path, data)
    else:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            for i in range(0, len(data), 1 << 20):  # in pieces, like a library would
                f.write(data[i:i + (1 << 20)])
"""


def whole_version(path: Path) -> int:
    """The value every byte of ``path`` holds; fails on a torn or short file."""
    data = np.fromfile(path, dtype=np.uint8)
    assert len(data) == SIZE, f"torn file: {len(data)} bytes, not {SIZE}"
    values = np.unique(data)
    assert len(values) == 1, f"torn file: mixes versions {values.tolist()[:5]}"
    return int(values[0])


def test_a_killed_writer_leaves_a_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    atomic_write_bytes(path, bytes([0]) * SIZE)  # the "old" file, version 0
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    rng = random.Random(0)
    seen = {0}
    for _ in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)],
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        seen.add(whole_version(path))
    assert len(seen) > 1  # the kills did let some writes finish: the old file was replaced
    strays = [p.name for p in tmp_path.iterdir() if TMP_MARK in p.name]
    assert all(name.startswith(".model.bin.tmp-") for name in strays)


def test_text_and_library_writes(tmp_path: Path) -> None:
    card = atomic_write_text(tmp_path / "sub" / "MODEL.md", "# ünïcode\n")
    assert card.read_text(encoding="utf-8") == "# ünïcode\n"
    target = tmp_path / "misclassified.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npz" and not tmp.exists()
        np.savez_compressed(tmp, a=np.arange(3))  # would append .npz to another suffix
    with np.load(target) as z:
        assert z["a"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["misclassified.npz", "sub"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "config.json", "old")
    with pytest.raises(RuntimeError, match="exporter broke"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("exporter broke")
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_path(target):
        pass
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.json"]
