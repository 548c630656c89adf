"""Names joined into paths, read-back ids kept inside their folder, user paths in one line."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from cifar_search.errors import ConfigError, DiskFullError, PathError
from cifar_search.names import (
    check_name,
    check_out_dir,
    check_out_file,
    inside,
    path_error,
    user_path,
)


@pytest.mark.parametrize("name", ["cifar", "small-2", "a", "x.y_z", "A" * 64, "0day"])
def test_check_name_accepts_safe_names(name: str) -> None:
    assert check_name("study", name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a..b", "../../../tmp/x", "x/y", "/abs", ".hidden", "-x", "a b",
             "A" * 65, "é", "x\\y", "x\n"],
)
def test_check_name_refuses_with_value_and_rule(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_name("study", name)
    message = str(info.value)
    assert repr(name) in message and "1 to 64 characters" in message and "\n" not in message


def test_inside_keeps_read_back_ids_in_their_folder(tmp_path: Path) -> None:
    assert inside(tmp_path, "abc") == (tmp_path / "abc").resolve()
    for bad in ("../x", "/etc/passwd", "a/../../x", ".", ""):
        with pytest.raises(ConfigError, match="leads outside"):
            inside(tmp_path, bad)


def test_user_path_names_the_path_and_the_reason(tmp_path: Path) -> None:
    with pytest.raises(PathError, match=r"^--space .*: Is a directory\.$"), \
            user_path("--space", tmp_path):
        tmp_path.read_text()
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(PathError, match=r"^--out .*f/sub: Not a directory\.$"), \
            user_path("--out", file / "sub"):
        (file / "sub").mkdir(parents=True)


def test_no_space_and_file_too_large_are_disk_full() -> None:
    for code in (errno.ENOSPC, errno.EFBIG):
        assert isinstance(path_error("x", "p", OSError(code, "full", "p")), DiskFullError)
    assert not isinstance(path_error("x", "p", OSError(errno.EACCES, "no", "p")), DiskFullError)


def test_out_paths_are_checked_before_anything_is_created(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    assert check_out_dir("--out", tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    assert not (tmp_path / "new").exists()
    with pytest.raises(PathError, match="exists and is not a folder"):
        check_out_dir("--out", file)
    with pytest.raises(PathError, match=r"file/sub: .*file is not a folder"):
        check_out_dir("--out", file / "sub")
    with pytest.raises(PathError, match="is a folder, expected a file"):
        check_out_file("--out", tmp_path)
    with pytest.raises(PathError, match="is not a folder"):
        check_out_file("--out", file / "report.html")
    assert check_out_file("--out", tmp_path / "a" / "r.html") == tmp_path / "a" / "r.html"
