"""Names that become parts of paths: study names, run folder names, artifact ids.

A user-given name is joined into paths (``studies/<study>.db``, ``studies/artifacts/<study>/``,
``runs/<study>/``), so it must not be empty, absolute, or climb out with ``..``. Every such name
goes through :func:`check_name`; anything read back from storage and used as a path goes through
:func:`inside`, which resolves it and checks it stays inside its folder. An ``OSError`` on a path
the user gave becomes one :class:`PathError` line naming the path and the reason
(:func:`user_path`); :func:`check_out_dir` refuses an output folder that cannot be made before
any work starts.

Example:
    >>> check_name("study", "small-2")
    'small-2'
    >>> check_name("study", "../x")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ConfigError: study name '../x' ...
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

from cifar_search.errors import ConfigError, DiskFullError, PathError

MAX_NAME = 64  # characters
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = (
    f"1 to {MAX_NAME} characters from A-Z a-z 0-9 . _ -, starting with a letter or digit, "
    "without '..'"
)


def check_name(kind: str, value: str) -> str:
    """``value`` if it is a safe path component, else a :class:`ConfigError` naming it.

    Args:
        kind: what the name is, for the message (``study``, ``run``...).
        value: the name as the user gave it.
    """
    if not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise ConfigError(f"{kind} name {value!r} is not allowed: use {NAME_RULE}.")
    return value


def inside(folder: Path, name: str, kind: str = "artifact id") -> Path:
    """``folder / name`` resolved, refused unless it stays strictly inside ``folder``.

    For names read back from a study (which anyone with access to the storage could have
    written): ``../x`` or ``/etc/x`` would otherwise reach outside ``folder``.
    """
    base = folder.resolve()
    path = (base / name).resolve()
    if path == base or base not in path.parents:
        raise ConfigError(f"{kind} {name!r} leads outside {folder}; refusing to use it.")
    return path


NO_SPACE = (errno.ENOSPC, errno.EFBIG)  # disk full, or over the file size limit: both "no space"


def path_error(what: str, path: str | Path, exc: OSError) -> PathError:
    """One line: ``<what> <path>: <reason>``, naming the path the OS complained about."""
    where = exc.filename if exc.filename is not None else path
    reason = exc.strerror or str(exc) or type(exc).__name__
    kind = DiskFullError if exc.errno in NO_SPACE else PathError
    return kind(f"{what} {where}: {reason}.")


@contextlib.contextmanager
def user_path(what: str, path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into a :class:`PathError` about ``path``.

    Example:
        >>> with user_path("--space", "./studies"):  # doctest: +SKIP
        ...     Path("studies").read_text()
        PathError: --space ./studies: Is a directory.
    """
    try:
        yield
    except OSError as exc:
        raise path_error(what, path, exc) from exc


def check_out_dir(what: str, path: str | Path) -> Path:
    """Refuse, before any work, an output folder that could not be created or written:
    an existing file in its place or above it, or a folder without write permission.
    Nothing is created."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise PathError(f"{what} {p}: exists and is not a folder.")
    _check_creatable(what, p, p)
    return p


def check_out_file(what: str, path: str | Path) -> Path:
    """Like :func:`check_out_dir`, for a file to write: not a folder, its folder can be made."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise PathError(f"{what} {p}: is a folder, expected a file.")
    if p.exists() and not os.access(p, os.W_OK):
        raise PathError(f"{what} {p}: no permission to write it.")
    _check_creatable(what, p, p.parent)
    return p


def _check_creatable(what: str, shown: Path, folder: Path) -> None:
    """``folder`` exists and is writable, or its nearest existing ancestor is a writable folder."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise PathError(f"{what} {shown}: {existing} is not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PathError(f"{what} {shown}: no permission to write in {existing}.")
