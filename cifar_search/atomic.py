"""Writes that survive a kill: the old file or the new one, never half of one.

Every file cifar-search writes for later commands (model folders, exports, ``MODEL.md``,
``misclassified.npz``, reports) goes through here: the data is written to a temporary name in the
same folder, flushed and ``fsync``'d, then renamed over the target with :func:`os.replace` (atomic
on POSIX and Windows within one file system), and the folder is ``fsync``'d so the rename itself
survives a power cut. A process killed at any point leaves the previous file (or none) in place,
plus at worst a stray hidden ``.NAME.tmp-*`` file.

Example:
    >>> atomic_write_text("runs/x/MODEL.md", card)  # doctest: +SKIP
    >>> with atomic_path("runs/x/model.safetensors") as tmp:  # doctest: +SKIP
    ...     safetensors.torch.save_file(tensors, str(tmp))
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

TMP_MARK = ".tmp-"  # temporary files are named .<name>.tmp-<pid>-<random><suffix>


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); returns ``path``."""
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return target


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see the module docstring); returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a library that writes files itself.

    The temporary name keeps ``path``'s suffix (``np.savez`` and some exporters add or check
    it). When the block ends without an exception the file is ``fsync``'d and renamed to
    ``path``; with one, it is removed and ``path`` is left as it was.

    Raises:
        FileNotFoundError: the block wrote nothing to the temporary path.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(
        f".{target.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{target.suffix}"
    )
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"{tmp}: nothing was written for {target}.")
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
