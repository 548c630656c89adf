"""Opening Optuna storages safely: SQLite for one machine, PostgreSQL (or MySQL) for many.

A bad URL, a missing study or a SQLite file on a network filesystem is a :class:`StudyError`
with one line naming it, raised before anything is created or changed.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from cifar_search.errors import StudyError

logger = logging.getLogger(__name__)

STUDIES_DIR = Path("studies")
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "lustre"}


def default_url(study: str, root: Path = STUDIES_DIR) -> str:
    return f"sqlite:///{root / study}.db"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, or None for another backend."""
    if not url.startswith("sqlite:"):
        return None
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        raise StudyError(f"storage URL {url!r}: use sqlite:///relative/path.db or "
                         "sqlite:////absolute/path.db (an in-memory database cannot be shared).")
    return Path(url.removeprefix("sqlite:///"))


def filesystem_type(path: Path) -> str:
    """The mount type holding ``path`` (from /proc/mounts; '' where unknown)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    target = str(path.resolve())
    best, kind = "", ""
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and (target == parts[1] or target.startswith(parts[1].rstrip("/") + "/")):
            if len(parts[1]) >= len(best):
                best, kind = parts[1], parts[2]
    return kind


def open_storage(
    url: str,
    *,
    create: bool = True,
    heartbeat_interval: int | None = 30,
    grace_period: int | None = None,
    max_retry: int = 2,
) -> RDBStorage:
    """An RDBStorage with heartbeats, stale-trial retry and, for SQLite, WAL mode.

    Args:
        url: SQLAlchemy URL (``sqlite:///studies/x.db``, ``postgresql://user:pw@host/db``).
        create: whether a missing SQLite file may be created (False for read-only commands).
        heartbeat_interval: seconds between a running trial's heartbeats (None: off).
        grace_period: seconds without heartbeat before a trial counts as stale
            (default: 4 heartbeats).
        max_retry: how many times a stale trial is retried with the same params.
    """
    path = sqlite_path(url)
    if path is not None:
        _prepare_sqlite(path, url, create=create)
        engine_kwargs: dict[str, object] = {"connect_args": {"timeout": 60}}
    elif url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "mysql"):
        engine_kwargs = {"pool_pre_ping": True}
    else:
        scheme = url.split(":", 1)[0] if ":" in url else url
        raise StudyError(f"unsupported storage URL {url!r} (scheme {scheme!r}): use "
                         "sqlite:///path.db or postgresql://user:password@host/database.")
    if heartbeat_interval is not None and grace_period is None:
        grace_period = 4 * heartbeat_interval
    try:
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
            if heartbeat_interval
            else None,
        )
    except (ImportError, ModuleNotFoundError) as exc:
        raise StudyError(f"storage URL {_redact(url)}: driver missing ({exc}); for PostgreSQL "
                         "install cifar-search[postgres].") from None
    except Exception as exc:  # sqlalchemy.exc.*: unreachable host, bad credentials, bad URL
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyError(f"cannot open storage {_redact(url)}: {first}") from None


def _prepare_sqlite(path: Path, url: str, *, create: bool) -> None:
    if not path.exists():
        if not create:
            raise StudyError(f"no study database at {path} (storage {url}).")
        if not path.parent.exists():
            if path.parent == STUDIES_DIR or path.parent == Path("."):
                path.parent.mkdir(parents=True, exist_ok=True)
            else:
                raise StudyError(f"storage {url}: folder {path.parent} does not exist.")
    fs = filesystem_type(path.parent)
    if fs in NETWORK_FILESYSTEMS:
        raise StudyError(f"storage {url}: {path.parent} is on a network filesystem ({fs}); "
                         "SQLite locking is unreliable there. Use a local path or PostgreSQL.")
    try:  # WAL: the dashboard and `status` read while a worker writes, without locking it out
        with sqlite3.connect(path, timeout=60) as con:
            con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as exc:
        raise StudyError(f"storage {url}: {path} is not a SQLite database ({exc}).") from None


def _redact(url: str) -> str:
    """The URL with any password hidden, for error messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def load_existing_study(url: str, name: str) -> optuna.Study:
    """Load a study that must exist; the error lists the studies the storage has."""
    storage = open_storage(url, create=False, heartbeat_interval=None)
    names = optuna.get_all_study_names(storage=storage)
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise StudyError(f"no study named {name!r} in {_redact(url)} (studies there: {known}).")
    return optuna.load_study(study_name=name, storage=storage)
