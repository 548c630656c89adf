"""Opening storages: bad URLs, missing or corrupt files, network filesystems, retries, pragmas.

Every study here is a real SQLite file under ``tmp_path``; PostgreSQL is covered by
``test_distributed.py`` against a real server.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import sqlalchemy.exc as sa_exc
from optuna.exceptions import StorageInternalError

from cifar_search.errors import StudyError
from cifar_search.search import storage
from cifar_search.search.storage import (
    filesystem_type,
    is_schema_race,
    is_transient,
    load_existing_study,
    open_storage,
    redact,
    retry_transient,
    sqlite_path,
)


def _operational(text: str) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError(text))


# --- URLs ----------------------------------------------------------------------------------


def test_sqlite_path_of_each_url_form(tmp_path: Path) -> None:
    assert sqlite_path("sqlite:///studies/x.db") == Path("studies/x.db")
    assert sqlite_path(f"sqlite:///{tmp_path}/x.db") == tmp_path / "x.db"
    assert sqlite_path("postgresql://u:p@h/db") is None
    for bad in ("sqlite:///:memory:", "sqlite://"):
        with pytest.raises(StudyError, match=r"sqlite:///relative/path\.db"):
            sqlite_path(bad)


def test_unsupported_scheme_names_it(tmp_path: Path) -> None:
    with pytest.raises(StudyError,
                       match=r"unsupported storage URL 'redis://h/0' \(scheme 'redis'\)"):
        open_storage("redis://h/0")


def test_passwords_never_reach_a_message() -> None:
    assert redact("postgresql://me:s3cret@db.lan:5432/x") == "postgresql://me:***@db.lan:5432/x"
    assert redact("postgresql://me@db.lan/x") == "postgresql://me@db.lan/x"
    assert redact("sqlite:///studies/x.db") == "sqlite:///studies/x.db"


# --- SQLite files ----------------------------------------------------------------------------


def test_missing_folder_and_missing_file_are_refused_without_creating_anything(
    tmp_path: Path,
) -> None:
    with pytest.raises(StudyError, match=r"folder .*nowhere does not exist"):
        open_storage(f"sqlite:///{tmp_path}/nowhere/x.db")
    with pytest.raises(StudyError, match="no study database at"):
        open_storage(f"sqlite:///{tmp_path}/x.db", create=False)
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_sqlite_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = path.read_bytes()
    with pytest.raises(StudyError, match=r"notes\.db is not a SQLite database"):
        open_storage(f"sqlite:///{path}")
    assert path.read_bytes() == before


def test_filesystem_type_takes_the_longest_mount_prefix(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\nserver:/export {tmp_path} nfs4 rw 0 0\n"
                      f"tmpfs {tmp_path}-other tmpfs rw 0 0\n")
    assert filesystem_type(tmp_path / "sub", mounts) == "nfs4"
    assert filesystem_type(tmp_path, mounts) == "nfs4"
    assert filesystem_type(Path("/usr"), mounts) == "ext4"
    assert filesystem_type(tmp_path, tmp_path / "no-such-file") == ""


def test_sqlite_on_a_network_filesystem_is_refused(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\nserver:/export {tmp_path} nfs4 rw 0 0\n")
    real = storage.filesystem_type
    monkeypatch.setattr(storage, "filesystem_type", lambda path: real(path, mounts))
    with pytest.raises(StudyError, match=r"network filesystem \(nfs4\).*Use a local path or "
                                         "PostgreSQL"):
        open_storage(f"sqlite:///{tmp_path}/x.db")
    assert not (tmp_path / "x.db").exists()


def test_sqlite_connections_use_wal_normal_sync_and_a_busy_timeout(tmp_path: Path) -> None:
    st = open_storage(f"sqlite:///{tmp_path}/x.db", heartbeat_interval=None)
    optuna.create_study(study_name="s", storage=st)  # opens pooled connections
    with st.engine.connect() as con:
        pragma = {name: con.execute(sqlalchemy.text(f"PRAGMA {name}")).scalar()
                  for name in ("journal_mode", "synchronous", "busy_timeout")}
    assert pragma == {"journal_mode": "wal", "synchronous": 1,  # 1: NORMAL
                      "busy_timeout": storage.SQLITE_BUSY_SECONDS * 1000}


def test_a_reader_sees_a_study_while_a_writer_holds_it_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    study = optuna.create_study(study_name="s", storage=open_storage(url, heartbeat_interval=None),
                                direction="maximize")
    trial = study.ask()
    trial.report(0.5, 1)  # a running trial, as a search leaves it between epochs
    seen = load_existing_study(url, "s").get_trials()
    assert [t.intermediate_values for t in seen] == [{1: 0.5}]
    with pytest.raises(StudyError, match=r"no study named 'other'.*studies there: s"):
        load_existing_study(url, "other")


# --- transient errors and retries ----------------------------------------------------------


def test_which_database_errors_are_worth_waiting_for() -> None:
    assert is_transient(_operational("database is locked"))
    assert is_transient(_operational("could not connect to server: Connection refused"))
    wrapped = StorageInternalError("An exception is raised during the commit.")
    wrapped.__cause__ = _operational("server closed the connection unexpectedly")
    assert is_transient(wrapped)  # how Optuna re-raises it
    for permanent in ('password authentication failed for user "me"',
                      'database "x" does not exist', "file is not a database"):
        assert not is_transient(_operational(permanent))
    assert not is_transient(ValueError("database is locked"))  # not a driver error


def test_schema_races_are_recognised() -> None:
    dup = sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key value"))
    assert is_schema_race(dup)
    exists = sa_exc.ProgrammingError("CREATE", {}, Exception('relation "studies" already exists'))
    assert is_schema_race(exists)
    assert not is_schema_race(sa_exc.ProgrammingError("SELECT", {}, Exception("syntax error")))


def test_retry_transient_waits_out_a_blip_and_gives_up_after_its_limit() -> None:
    calls = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise _operational("database is locked")
        return "ok"

    assert retry_transient(flaky, what="t", limit=5.0, first=0.01, cap=0.02) == "ok"
    assert len(calls) == 3

    def down() -> None:
        raise _operational("Connection refused")

    start = time.monotonic()
    with pytest.raises(sa_exc.OperationalError):
        retry_transient(down, what="t", limit=0.2, first=0.01, cap=0.05)
    assert time.monotonic() - start < 1.0

    def wrong_password() -> None:
        calls.append(0.0)
        raise _operational("password authentication failed")

    calls.clear()
    with pytest.raises(sa_exc.OperationalError):
        retry_transient(wrong_password, what="t", limit=5.0, first=0.01)
    assert len(calls) == 1  # permanent: not retried


# --- Optuna's private storage methods: probed, not assumed ---------------------------------


def test_every_retried_method_exists_in_this_optuna() -> None:
    assert storage.UNRETRIED == ()
    assert storage.RetryingRDBStorage._get_trials is not optuna.storages.RDBStorage._get_trials


def test_a_renamed_private_method_is_left_unretried_not_an_import_error() -> None:
    calls = []

    class Base:
        def read(self, x: int) -> int:
            return x + 1

    class Wrapped(Base):
        def _call(self, name: str, fn):  # type: ignore[no-untyped-def]
            calls.append(name)
            return fn()

    missing = storage.wrap_methods(Wrapped, Base, ("read", "_renamed_in_a_new_optuna"))
    assert missing == ("_renamed_in_a_new_optuna",)
    assert Wrapped().read(1) == 2 and calls == ["read"]


def test_unretried_methods_are_named_once_when_a_storage_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(storage, "UNRETRIED", ("_get_stale_trial_ids",))
    storage._warn_unretried.cache_clear()
    with caplog.at_level("WARNING", logger="cifar_search.search.storage"):
        for name in ("a", "b"):
            open_storage(f"sqlite:///{tmp_path}/{name}.db", heartbeat_interval=None)
    lines = [r.getMessage() for r in caplog.records if "not retried" in r.getMessage()]
    assert len(lines) == 1 and "_get_stale_trial_ids" in lines[0]
    storage._warn_unretried.cache_clear()
