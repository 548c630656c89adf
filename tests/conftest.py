"""Shared fixtures: generated datasets in both on-disk formats, and the real data set."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from datagen import write_batches, write_npz
from runhelp import FIXED_TOML, TINY_TOML

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10"  # unpack.sh, MANIFEST.json

torch.set_num_threads(2)  # the reference machine's cores; keeps timings comparable


@pytest.fixture(scope="session")
def _synthetic_templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated once per session (2000 train / 500 test images); tests get copies."""
    root = tmp_path_factory.mktemp("synthetic")
    write_npz(root / "cifar10.npz", n_train=2000, n_test=500, seed=0)
    write_batches(root / "cifar-10-batches-py", n_train=2000, n_test=500, seed=0)
    return root


@pytest.fixture
def synthetic_npz(_synthetic_templates: Path, tmp_path: Path) -> Path:
    """Path to a private copy of a small generated ``cifar10.npz``."""
    return Path(shutil.copy(_synthetic_templates / "cifar10.npz", tmp_path / "cifar10.npz"))


@pytest.fixture
def synthetic_batches(_synthetic_templates: Path, tmp_path: Path) -> Path:
    """Path to a private copy of a small generated ``cifar-10-batches-py/`` folder."""
    dest = tmp_path / "cifar-10-batches-py"
    shutil.copytree(_synthetic_templates / "cifar-10-batches-py", dest)
    return dest


@pytest.fixture(scope="session")
def real_npz() -> Path:
    """The real CIFAR-10 ``.npz``, unpacked once into ``$CIFAR_SEARCH_TEST_CACHE``."""
    script = SHARED_CIFAR / "unpack.sh"
    if not script.exists():
        pytest.skip(f"real CIFAR-10 not available: {script} is missing")
    cache = Path(os.environ.get("CIFAR_SEARCH_TEST_CACHE", "~/.cache/cifar-search-test"))
    cache = cache.expanduser()
    subprocess.run(["bash", str(script), str(cache)], check=True, capture_output=True)
    return cache / "cifar10.npz"


@pytest.fixture
def tiny_space(tmp_path: Path) -> Path:
    """A space file fixing a tiny plain CNN: trials take about a second on one core."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


@pytest.fixture
def fixed_space(tmp_path: Path) -> Path:
    """A space file fixing every param of the tiny CNN: nothing is sampled, nothing diverges."""
    path = tmp_path / "fixed.toml"
    path.write_text(FIXED_TOML)
    return path
