"""cifar_search.train.data: both formats, safety, validation, missing data, split and subsets."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from datagen import make_images, write_batches, write_npz, write_py2_pickle

from cifar_search.errors import ConfigError, DataError
from cifar_search.train.data import (
    CifarArrays,
    load_cifar10,
    resolve_data_path,
    stratified_subset,
    train_val_split,
)

SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"

# --- formats -------------------------------------------------------------------------------


def test_npz_loads_with_int64_labels_and_read_only_arrays(synthetic_npz: Path) -> None:
    arrays = load_cifar10(synthetic_npz, download=False)
    assert arrays.train_x.shape == (2000, 32, 32, 3) and arrays.train_x.dtype == np.uint8
    assert arrays.test_x.shape == (500, 32, 32, 3)
    assert arrays.train_y.dtype == np.int64 and arrays.test_y.dtype == np.int64
    assert set(np.unique(arrays.train_y)) == set(range(10))
    assert arrays.source == str(synthetic_npz)
    assert not arrays.train_x.flags.writeable


def test_official_batches_load_the_same_images_as_the_npz(
    synthetic_batches: Path, synthetic_npz: Path
) -> None:
    batches = load_cifar10(synthetic_batches, download=False)
    npz = load_cifar10(synthetic_npz, download=False)  # same generator seed
    for name in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(batches, name), getattr(npz, name))
    x, _ = make_images(2000, seed=0)  # HWC from planar: pixel-exact
    np.testing.assert_array_equal(batches.train_x, x)


def test_folders_env_and_default_cache_resolve(
    synthetic_npz: Path, synthetic_batches: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_data_path(tmp_path) == synthetic_npz.resolve()  # both there: the npz wins
    holder = tmp_path / "holder"
    holder.mkdir()
    (holder / "cifar-10-batches-py").symlink_to(synthetic_batches)
    assert resolve_data_path(holder).name == "cifar-10-batches-py"
    monkeypatch.setenv("CIFAR_SEARCH_DATA", str(synthetic_npz))
    assert resolve_data_path(None) == synthetic_npz.resolve()
    monkeypatch.delenv("CIFAR_SEARCH_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_path(None) == (tmp_path / "xdg" / "cifar-search").resolve()


def test_loads_are_cached_until_the_file_changes(synthetic_npz: Path) -> None:
    first = load_cifar10(synthetic_npz, download=False)
    assert load_cifar10(str(synthetic_npz), download=False) is first
    write_npz(synthetic_npz, n_train=1000, n_test=200, seed=3)
    os.utime(synthetic_npz, ns=(1, 1))
    assert len(load_cifar10(synthetic_npz, download=False).train_x) == 1000


def test_generated_data_is_learnable(synthetic_npz: Path) -> None:
    """A nearest class mean on raw pixels beats chance by far, so short searches learn it."""
    a = load_cifar10(synthetic_npz, download=False)
    means = np.stack([a.train_x[a.train_y == c].mean(0).ravel() for c in range(10)])
    dist = ((a.test_x.reshape(len(a.test_x), -1)[:, None, :] - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == a.test_y).mean() > 0.5


# --- safety and corruption ----------------------------------------------------------------


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("nested", [False, True])
def test_planted_pickle_is_refused_without_running(
    synthetic_batches: Path, tmp_path: Path, nested: bool
) -> None:
    marker = tmp_path / "owned"
    payload: object = _Planted(marker)
    if nested:  # hidden inside an otherwise valid-looking batch
        payload = {b"data": np.zeros((10, 3072), np.uint8), b"labels": [_Planted(marker)]}
    write_py2_pickle(synthetic_batches / "data_batch_2", payload)
    with pytest.raises(DataError, match=r"data_batch_2.*refused.*system"):
        load_cifar10(synthetic_batches, download=False)
    assert not marker.exists()


def test_truncated_npz_names_the_file(synthetic_npz: Path) -> None:
    data = synthetic_npz.read_bytes()
    synthetic_npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cifar10\.npz.*truncated or corrupt"):
        load_cifar10(synthetic_npz, download=False)


def test_truncated_pickle_names_the_file(synthetic_batches: Path) -> None:
    path = synthetic_batches / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"data_batch_3.*truncated or corrupt"):
        load_cifar10(synthetic_batches, download=False)


def test_missing_batch_names_the_file(synthetic_batches: Path) -> None:
    (synthetic_batches / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch"):
        load_cifar10(synthetic_batches, download=False)


def test_batch_with_wrong_layout_is_rejected(synthetic_batches: Path) -> None:
    bad = {b"data": np.zeros((10, 1024), np.uint8), b"labels": [0] * 10}
    write_py2_pickle(synthetic_batches / "data_batch_1", bad)
    with pytest.raises(DataError, match=r"data_batch_1.*\(N, 3072\)"):
        load_cifar10(synthetic_batches, download=False)


def _arrays(n: int = 200) -> dict[str, np.ndarray]:
    x, y = make_images(n, seed=1)
    return {"train_x": x, "train_y": y, "test_x": x[:50], "test_y": y[:50]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.update(train_x=a["train_x"].astype(np.float32)), "train_x must be uint8"),
        (lambda a: a.update(train_x=a["train_x"].transpose(0, 3, 1, 2)), r"\(N, 32, 32, 3\)"),
        (lambda a: a.update(test_y=a["test_y"] + 5), r"labels must be in 0\.\.9"),
        (lambda a: a.update(train_y=a["train_y"].astype(np.float64)), "train_y must be integer"),
        (lambda a: a.update(train_y=a["train_y"][:-1]), "200 train images but 199 labels"),
        (lambda a: a.update(test_y=a["test_y"] % 9), r"class\(es\) \[9\]"),
        (lambda a: a.pop("test_x"), r"missing key\(s\) \['test_x'\]"),
    ],
)
def test_bad_npz_contents_are_rejected(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    arrays = _arrays()
    change(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_cifar10(path, download=False)


def test_other_counts_are_accepted_and_logged(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "small.npz"
    np.savez(path, **_arrays())
    with caplog.at_level("INFO", logger="cifar_search.train.data"):
        assert len(load_cifar10(path, download=False).train_x) == 200
    assert "200 train images (official: 50000)" in caplog.text


# --- missing data ---------------------------------------------------------------------------


def test_train_subset_is_checked_against_the_split() -> None:
    from cifar_search.errors import ConfigError
    from cifar_search.train.data import check_train_subset

    check_train_subset(None, 100, "d")
    check_train_subset(100, 100, "d")
    with pytest.raises(ConfigError, match=r"--train-subset 5 is below 10"):
        check_train_subset(5, 100, "d")
    with pytest.raises(ConfigError, match=r"--train-subset 9999999 exceeds .* of d: 1,800 images"):
        check_train_subset(9999999, 1800, "d")


def test_missing_offline_says_how_to_get_the_data(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_cifar10(tmp_path / "empty", download=False)
    message = str(info.value)
    assert "not found" in message and "network connection" in message
    assert "--data" in message and "$CIFAR_SEARCH_DATA" in message
    assert "cifar10.npz" in message and "cifar-10-batches-py/" in message
    assert "data_batch_1..5 and test_batch" in message
    assert "unpack.sh" not in message  # a development set-up path, not an installed package's
    with pytest.raises(DataError, match="no such file"):
        load_cifar10(tmp_path / "nowhere.npz")


def test_failed_download_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.cifar as tv_cifar

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match=r"download failed: OSError: Network is unreachable") as e:
        load_cifar10(tmp_path / "cache", download=True)
    assert "\n" not in str(e.value) and "--data" in str(e.value)


def test_download_is_read_with_the_safe_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.cifar as tv_cifar

    def fake_download(url: str, root: str, **kwargs: object) -> None:
        assert url.endswith("cifar-10-python.tar.gz") and kwargs["md5"]
        write_batches(Path(root) / "cifar-10-batches-py", n_train=500, n_test=100, seed=2)

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", fake_download)
    monkeypatch.setattr(pickle, "load", None)  # torchvision's reader would need it
    arrays = load_cifar10(tmp_path / "cache", download=True)
    assert isinstance(arrays, CifarArrays) and len(arrays.train_x) == 500
    assert arrays.source.endswith("cifar-10-batches-py")


# --- split and subsets ----------------------------------------------------------------------


def test_split_is_stratified_disjoint_sorted_and_reproducible() -> None:
    labels = np.repeat(np.arange(10), 100)
    split = train_val_split(labels, val_size=200, seed=0)
    assert len(split.val) == 200 and len(split.train) == 800
    assert np.bincount(labels[split.val], minlength=10).tolist() == [20] * 10
    assert np.intersect1d(split.train, split.val).size == 0
    assert np.array_equal(np.sort(np.concatenate([split.train, split.val])), np.arange(1000))
    assert np.all(np.diff(split.val) > 0) and np.all(np.diff(split.train) > 0)
    again = train_val_split(labels, val_size=200, seed=0)
    assert np.array_equal(again.val, split.val)
    assert not np.array_equal(train_val_split(labels, val_size=200, seed=1).val, split.val)


def test_split_rejects_bad_sizes() -> None:
    with pytest.raises(ConfigError, match="val_size=1000"):
        train_val_split(np.arange(1000) % 10, val_size=1000)


def test_stratified_subset_keeps_proportions_and_names_bad_n() -> None:
    labels = np.repeat(np.arange(10), 100)
    pool = np.arange(0, 1000, 2)  # 50 per class
    subset = stratified_subset(pool, labels, 100, seed=0)
    assert len(subset) == 100 and np.isin(subset, pool).all()
    assert np.bincount(labels[subset], minlength=10).tolist() == [10] * 10
    assert np.array_equal(subset, stratified_subset(pool, labels, 100, seed=0))
    for n in (0, 501):
        with pytest.raises(ConfigError, match=f"n={n}"):
            stratified_subset(pool, labels, n)


# --- the real data set ----------------------------------------------------------------------


def test_real_npz_matches_the_manifest(real_npz: Path) -> None:
    manifest = json.loads((SHARED_CIFAR / "MANIFEST.json").read_text())
    arrays = load_cifar10(real_npz, download=False)
    assert list(arrays.train_x.shape) == manifest["train_x"]["shape"]
    assert list(arrays.test_x.shape) == manifest["test_x"]["shape"]
    assert np.bincount(arrays.train_y).tolist() == manifest["train_per_class"]
    assert np.bincount(arrays.test_y).tolist() == manifest["test_per_class"]
    split = train_val_split(arrays.train_y)
    assert (len(split.train), len(split.val)) == (45000, 5000)
    assert np.bincount(arrays.train_y[split.val]).tolist() == [500] * 10
