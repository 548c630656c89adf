"""Opening Optuna storages safely: SQLite for one machine, PostgreSQL (or MySQL) for many.

A bad URL, a missing study or a SQLite file on a network filesystem is a :class:`StudyError`
with one line naming it, raised before anything is created or changed.

Workers on one machine share a SQLite file in WAL mode with a 60 s busy timeout; workers on many
machines share a PostgreSQL database (measured and explained in ``docs/distributed.md``). Either
way the storage is a :class:`RetryingRDBStorage`: a database that goes away (a restart, a
network blip, a busy lock) is waited for with exponential back-off instead of failing the trial.
"""

from __future__ import annotations

import functools
import logging
import random
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from cifar_search.errors import StudyError
from cifar_search.names import check_name

logger = logging.getLogger(__name__)

T = TypeVar("T")
STUDIES_DIR = Path("studies")
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "lustre"}
RETRY_SECONDS = 600.0  # how long a running worker waits for a lost database, seconds
CONNECT_SECONDS = 60.0  # how long opening a storage waits for an unreachable database, seconds
SQLITE_BUSY_SECONDS = 60  # SQLite busy timeout: how long a writer waits for the lock, seconds
# errors that retrying cannot fix, although the driver files them under OperationalError
_PERMANENT = ("authentication failed", "does not exist", "could not translate host name",
              "no such table", "permission denied", "not a database", "syntax error",
              "name or service not known", "unable to open database file")


def default_url(study: str, root: Path = STUDIES_DIR) -> str:
    """``sqlite:///studies/<study>.db``; the name is checked first (:func:`check_name`)."""
    return f"sqlite:///{root / check_name('study', study)}.db"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL, or None for another backend."""
    if not url.startswith("sqlite:"):
        return None
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        raise StudyError(f"storage URL {url!r}: use sqlite:///relative/path.db or "
                         "sqlite:////absolute/path.db (an in-memory database cannot be shared).")
    return Path(url.removeprefix("sqlite:///"))


def filesystem_type(path: Path, mounts_file: Path = Path("/proc/mounts")) -> str:
    """The type of the mount holding ``path`` (from ``mounts_file``; '' where unknown)."""
    try:
        mounts = mounts_file.read_text().splitlines()
    except OSError:
        return ""
    target = str(path.resolve())
    best, kind = "", ""
    for line in mounts:
        parts = line.split()
        if len(parts) < 3 or len(parts[1]) < len(best):
            continue
        if target == parts[1] or target.startswith(parts[1].rstrip("/") + "/"):
            best, kind = parts[1], parts[2]
    return kind


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a lost, refused or locked database connection that may come back.

    Optuna re-raises SQLAlchemy errors as ``StorageInternalError``; the cause chain is searched.
    Wrong credentials, a missing database or a bad schema are not transient.
    """
    import sqlalchemy.exc as sa_exc

    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, sa_exc.DBAPIError) and err.connection_invalidated:
            return True
        if isinstance(err, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
            text = str(err).lower()
            return not any(marker in text for marker in _PERMANENT)
        err = err.__cause__ or err.__context__
    return False


def is_schema_race(exc: BaseException) -> bool:
    """Whether ``exc`` is another process creating the same tables at the same moment (workers
    started together on a fresh PostgreSQL database): opening again finds them made."""
    import sqlalchemy.exc as sa_exc

    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, sa_exc.IntegrityError):  # a duplicate row or type: theirs landed
            return True
        if isinstance(err, sa_exc.ProgrammingError):
            return "already exists" in str(err).lower()
        err = err.__cause__ or err.__context__
    return False


def retry_transient(
    fn: Callable[[], T], *, what: str, limit: float, first: float = 0.5, cap: float = 10.0,
    transient: Callable[[BaseException], bool] = is_transient,
) -> T:
    """``fn()``, retried with exponential back-off (``first`` doubling up to ``cap`` seconds,
    jittered) while it fails with a transient database error, for at most ``limit`` seconds."""
    start = time.monotonic()
    delay, attempt = first, 0
    while True:
        try:
            result = fn()
        except Exception as exc:
            waited = time.monotonic() - start
            if not transient(exc) or waited + delay > limit:
                raise
            attempt += 1
            logger.warning("%s: database unavailable (%s); retry %d in %.1f s (gives up after "
                           "%.0f s)", what, _first_line(exc), attempt, delay, limit)
            time.sleep(delay * random.uniform(0.75, 1.0))
            delay = min(2 * delay, cap)
            continue
        if attempt:
            logger.warning("%s: database back after %.1f s", what, time.monotonic() - start)
        return result


_LOCAL = threading.local()  # per thread: inside a retried storage call already?


class RetryingRDBStorage(RDBStorage):
    """An :class:`~optuna.storages.RDBStorage` whose every database call is retried with
    back-off while the database is unreachable or locked (see :func:`retry_transient`).

    Only the outermost call of a thread retries, so nested calls do not multiply the wait.
    Re-running a write is safe: Optuna's writes are upserts, a study created twice is loaded,
    and a state change that did commit before the connection dropped is recognised.
    """

    retry_seconds: float = RETRY_SECONDS

    def _call(self, name: str, fn: Callable[[], T]) -> T:
        if getattr(_LOCAL, "active", False):
            return fn()
        _LOCAL.active = True
        try:
            return retry_transient(fn, what=f"storage.{name.lstrip('_')}",
                                   limit=self.retry_seconds)
        finally:
            _LOCAL.active = False

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        attempts = 0

        def call() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except UpdateFinishedTrialError:  # our first attempt committed, then the link died
                if attempts > 1 and RDBStorage.get_trial(self, trial_id).state == state:
                    return True
                raise

        return self._call("set_trial_state_values", call)


def _retrying(base: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(base)
    def method(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, lambda: base(self, *args, **kwargs))

    return method


# every RDBStorage method that talks to the database (the _private ones are what Optuna's cache
# layer calls); the public ones not listed here delegate to these
RETRIED_METHODS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_trial_user_attrs",
    "get_trial_system_attrs", "get_all_studies", "_create_new_trial", "_set_trial_param",
    "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial",
    "_get_trials", "_get_best_trial_id", "record_heartbeat", "_get_stale_trial_ids",
)


def wrap_methods(cls: type, base: type, names: Sequence[str]) -> tuple[str, ...]:
    """Give ``cls`` a retrying version of each of ``base``'s methods ``names``; returns the
    names ``base`` lacks. Five of them are private to Optuna, so a release may rename one: it
    is then left unretried (one warning when a storage opens, :func:`open_storage`), and every
    command still works, instead of failing at import."""
    missing = []
    for name in names:
        base_method = getattr(base, name, None)
        if not callable(base_method):
            missing.append(name)
            continue
        setattr(cls, name, _retrying(base_method, name))
    return tuple(missing)


UNRETRIED = wrap_methods(RetryingRDBStorage, RDBStorage, RETRIED_METHODS)


@functools.cache
def _warn_unretried(names: tuple[str, ...]) -> None:
    logger.warning("this Optuna's RDBStorage has no %s: those calls are not retried when the "
                   "database goes away (cifar-search was written for Optuna 5.0-5.1)",
                   ", ".join(names))


def open_storage(
    url: str,
    *,
    create: bool = True,
    heartbeat_interval: int | None = 30,
    grace_period: int | None = None,
    max_retry: int = 2,
    retry_seconds: float = RETRY_SECONDS,
    connect_seconds: float = CONNECT_SECONDS,
) -> RetryingRDBStorage:
    """A storage with heartbeats, stale-trial retry, back-off on a lost database and, for
    SQLite, WAL mode and a busy timeout.

    Args:
        url: SQLAlchemy URL (``sqlite:///studies/x.db``, ``postgresql://user:pw@host/db``).
        create: whether a missing SQLite file may be created (False for read-only commands).
        heartbeat_interval: seconds between a running trial's heartbeats (None: off).
        grace_period: seconds without heartbeat before a trial counts as stale
            (default: 4 heartbeats).
        max_retry: how many times a stale trial is retried with the same params.
        retry_seconds: how long a call waits for a database that went away, seconds.
        connect_seconds: how long opening waits for an unreachable database, seconds.
    """
    if UNRETRIED:
        _warn_unretried(UNRETRIED)
    path = sqlite_path(url)
    if path is not None:
        _prepare_sqlite(path, url, create=create)
        engine_kwargs: dict[str, object] = {"creator": functools.partial(_sqlite_connect, path)}
    elif url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "mysql"):
        engine_kwargs = {"pool_pre_ping": True}
    else:
        scheme = url.split(":", 1)[0] if ":" in url else url
        raise StudyError(f"unsupported storage URL {url!r} (scheme {scheme!r}): use "
                         "sqlite:///path.db or postgresql://user:password@host/database.")
    if heartbeat_interval is not None and grace_period is None:
        grace_period = 4 * heartbeat_interval

    def build() -> RetryingRDBStorage:
        with warnings.catch_warnings():  # heartbeats are "experimental"; we rely on and test them
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RetryingRDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry)
                if heartbeat_interval
                else None,
            )

    try:
        storage = retry_transient(build, what=f"opening {redact(url)}", limit=connect_seconds,
                                  transient=lambda e: is_transient(e) or is_schema_race(e))
    except (ImportError, ModuleNotFoundError) as exc:
        raise StudyError(f"storage URL {redact(url)}: driver missing ({exc}); for PostgreSQL "
                         "install cifar-search[postgres].") from None
    except Exception as exc:  # sqlalchemy.exc.*: unreachable host, bad credentials, bad URL
        raise StudyError(f"cannot open storage {redact(url)}: {_first_line(exc)}") from None
    storage.retry_seconds = retry_seconds
    return storage


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
        with sqlite3.connect(path, timeout=SQLITE_BUSY_SECONDS) as con:
            con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as exc:
        raise StudyError(f"storage {url}: {path} is not a SQLite database ({exc}).") from None


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    """A connection with the busy timeout and ``synchronous=NORMAL``.

    A trial makes about 90 commits (one per parameter, report and attribute). In WAL mode the
    default ``synchronous=FULL`` syncs the log on every one of them (0.28 ms a commit on the
    reference disk, against 0.04 ms; far more on network block storage). ``NORMAL`` syncs at
    checkpoints only. SQLite documents WAL + NORMAL as corruption-safe: a process that dies
    loses nothing it committed; a power cut can roll back the last commits, which the study then
    resumes like any interrupted trial.
    """
    con = sqlite3.connect(path, timeout=SQLITE_BUSY_SECONDS, check_same_thread=False)
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def _first_line(exc: BaseException) -> str:
    """The first line of the innermost cause (Optuna's own wrapper message says nothing)."""
    seen: set[int] = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def redact(url: str) -> str:
    """The URL with any password hidden, for error messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def load_existing_study(url: str, name: str) -> optuna.Study:
    """Load a study that must exist; the error lists the studies the storage has."""
    storage = open_storage(url, create=False, heartbeat_interval=None, connect_seconds=10.0)
    names = optuna.get_all_study_names(storage=storage)
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise StudyError(f"no study named {name!r} in {redact(url)} (studies there: {known}).")
    return optuna.load_study(study_name=name, storage=storage)
