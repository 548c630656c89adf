"""Many workers on one PostgreSQL study: exact totals, a SIGKILLed worker, a database restart.

Each worker is a separate `cifar-search run` process, as on separate machines. The server is
the real one `.ci/postgres.sh` starts on 127.0.0.1 (``$CIFAR_SEARCH_TEST_POSTGRES``); without
it these tests are skipped, except in CI, where a missing server fails them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState
from runhelp import counted, finish, load, search_args, spawn, wait_for_running

from cifar_search.errors import StudyError
from cifar_search.search.storage import open_storage

URL = os.environ.get("CIFAR_SEARCH_TEST_POSTGRES", "")
REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not URL and not os.environ.get("CI"),
                       reason="no PostgreSQL: eval \"$(bash .ci/postgres.sh start)\""),
]


@pytest.fixture
def pg_url() -> str:
    """A fresh, empty database on the test server: the workers race to create the schema."""
    import psycopg
    from sqlalchemy.engine import make_url

    if not URL:
        pytest.fail("CI must start PostgreSQL (.ci/postgres.sh) for these tests")
    url = make_url(URL)
    name = f"t{uuid.uuid4().hex[:10]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


STUDY = "cifar"


def _workers(n: int, url: str, data: Path, space: Path, *extra: str
             ) -> list[subprocess.Popen[str]]:
    args = search_args(url, STUDY, data, space, "--train-subset", "256", *extra)
    return [spawn(args) for _ in range(n)]


def _assert_exact(url: str, total: int) -> None:
    study = load(url, STUDY)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))  # no trial number handed out twice
    assert len(counted(study)) == total
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)
                and "preset" not in t.user_attrs]
    errors = [t for t in trials if t.user_attrs.get("end") == "error"]
    assert not errors, errors[0].user_attrs["error"]


def test_four_workers_finish_exactly_n_trials(
    pg_url: str, synthetic_npz: Path, tiny_space: Path
) -> None:
    procs = _workers(4, pg_url, synthetic_npz, tiny_space, "--trials", "10", "--epochs", "2")
    finish(procs)
    _assert_exact(pg_url, 10)
    study = load(pg_url, STUDY)
    assert len({t.user_attrs["worker"] for t in counted(study)}) >= 2  # shared out


def test_a_sigkilled_worker_trial_is_retried_while_the_others_go_on(
    pg_url: str, synthetic_npz: Path, tiny_space: Path
) -> None:
    extra = ("--trials", "6", "--epochs", "8", "--heartbeat", "1", "--pruner", "none")
    procs = _workers(3, pg_url, synthetic_npz, tiny_space, *extra)
    victim_trial = wait_for_running(pg_url, STUDY, procs)[0]
    pid = int(victim_trial.user_attrs["worker"].split("/")[1])
    victim = next(p for p in procs if p.pid == pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    finish([p for p in procs if p is not victim])
    study = load(pg_url, STUDY)
    killed = study.trials[victim_trial.number]
    assert killed.state == TrialState.FAIL  # found stale by a surviving worker's heartbeat check
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    _assert_exact(pg_url, 6)


def test_workers_ride_out_a_database_restart(
    pg_url: str, synthetic_npz: Path, tiny_space: Path
) -> None:
    procs = _workers(2, pg_url, synthetic_npz, tiny_space, "--trials", "6", "--epochs", "6",
                     "--pruner", "none")
    wait_for_running(pg_url, STUDY, procs)
    subprocess.run(["bash", str(REPO / ".ci" / "postgres.sh"), "restart", "3"], check=True,
                   capture_output=True, timeout=120)
    outs = finish(procs)
    assert any("database unavailable" in out for out in outs)  # they did see it go away
    _assert_exact(pg_url, 6)


def test_local_workers_against_postgresql(
    pg_url: str, synthetic_npz: Path, tiny_space: Path
) -> None:
    args = search_args(pg_url, STUDY, synthetic_npz, tiny_space, "--train-subset", "256",
                       "--trials", "5", "--epochs", "2", "--workers", "2")
    finish([spawn(args)])
    _assert_exact(pg_url, 5)


def test_bad_postgres_credentials_are_one_line_errors() -> None:
    from sqlalchemy.engine import make_url

    if not URL:
        pytest.skip("needs the server")
    wrong = make_url(URL).set(password="nope").render_as_string(hide_password=False)
    start = time.monotonic()
    with pytest.raises(StudyError, match=r"cannot open storage .*\*\*\*.*authentication failed"):
        open_storage(wrong)
    assert time.monotonic() - start < 30  # a permanent error is not retried for a minute
