"""Bad input through the real entry point: one line and exit 2, never a traceback, nothing made.

The inputs of issue 14 ("Hardening") are named tests here; a property test then throws random
argument lists, drawn from each command's real options, at ``main`` and checks the same.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cifar_search.cli.main import build_parser, main

# commands that fail fast on a missing data set, or never need one (no `dashboard`: a server)
COMMANDS = ("run", "train", "lr-find", "retrain", "report", "status", "trials", "best", "space",
            "predict", "presets")
POSITIONALS = ("retrain", "predict", "presets")  # the commands that take any
SKIPPED = {"-h", "--help", "--version", "--storage", "--data", "--workers", "--device"}


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_space_that_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--space", str(tmp_path), "--data", str(tmp_path / "cifar10.npz"),
                 "--storage", f"sqlite:///{tmp_path}/t.db", "--device", "cpu"])
    assert code == 2
    assert f"space file {tmp_path}: Is a directory." in _one_line_error(capsys)
    assert not (tmp_path / "t.db").exists()


def test_train_out_under_a_regular_file_is_refused_before_training(
    tmp_path: Path, synthetic_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    code = main(["train", "--preset", "rdfia-alexnet", "--data", str(synthetic_npz),
                 "--device", "cpu", "--out", str(file / "sub")])
    assert code == 2
    assert f"--out {file / 'sub'}: {file} is not a folder." in _one_line_error(capsys)


def test_report_out_is_a_folder_like_every_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    code = main(["report", "--storage", f"sqlite:///{tmp_path}/t.db", "--out", str(file)])
    assert code == 2
    assert "exists and is not a folder" in _one_line_error(capsys)
    code = main(["report", "--storage", f"sqlite:///{tmp_path}/t.db",
                 "--out", str(tmp_path / "page.html")])
    assert code == 2
    assert f"pass --out {tmp_path}" in _one_line_error(capsys)
    assert not (tmp_path / "page.html").exists() and not (tmp_path / "t.db").exists()


def test_data_under_a_regular_file(tmp_path: Path, tiny_space: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    code = main(["run", "--data", str(file / "data"), "--space", str(tiny_space),
                 "--storage", f"sqlite:///{tmp_path}/t.db", "--device", "cpu"])
    assert code == 2
    assert "CIFAR-10 not found" in _one_line_error(capsys)
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-params", "-1"], "--max-params: must be a finite number > 0, but got -1"),
        (["--max-flops", "nan"], "--max-flops: must be a finite number > 0, but got nan"),
        (["--timeout", "0"], "--timeout: must be a finite number > 0, but got 0"),
        (["--train-subset", "5"], "--train-subset: must be >= 10, but got 5"),
        (["--seed", "-1"], "--seed: must be in [0, 2147483647], but got -1"),
        (["--keep-top-k", "-2"], "--keep-top-k: must be >= 0, but got -2"),
        (["--heartbeat", "0"], "--heartbeat: must be >= 1, but got 0"),
        (["--epochs", "x"], "--epochs: must be a positive integer, but got 'x'"),
    ],
)
def test_numbers_out_of_range_are_refused_by_the_parser(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", *args])
    assert info.value.code == 2
    assert message in _one_line_error(capsys)


def test_train_subset_beyond_the_training_split(tmp_path: Path, synthetic_npz: Path,
                                                tiny_space: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--train-subset", "9999999", "--data", str(synthetic_npz), "--space",
                 str(tiny_space), "--storage", f"sqlite:///{tmp_path}/t.db", "--device", "cpu",
                 "--budget", "smoke"])
    assert code == 2
    assert "--train-subset 9999999 exceeds the training split" in _one_line_error(capsys)
    assert not (tmp_path / "t.db").exists()


# --- property test: random argument lists ---------------------------------------------------


def _options() -> dict[str, list[tuple[str, bool]]]:
    """Each command's real options: (flag, takes a value), read from the parser itself."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out: dict[str, list[tuple[str, bool]]] = {}
    for name in COMMANDS:
        flags = []
        for action in sub.choices[name]._actions:
            for flag in action.option_strings:
                if flag not in SKIPPED and flag.startswith("--"):
                    flags.append((flag, action.nargs != 0))
        out[name] = flags
    return out


OPTIONS = _options()
# placeholders for paths made per test: an existing file, an existing folder, a file used as a
# folder, a path that climbs out of the working folder
VALUES = ("-1", "0", "", "1", "3", "1.5", "-0.5", "1e309", "nan", "inf", "99999999999999999999",
          "..", "../../../tmp/x", "a/b", "cifar", "davidnet", "best", "list", "show", "{file}",
          "{folder}", "{file}/sub", "{file}/sub.html", "{missing}")


@st.composite
def argv(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(COMMANDS))
    options = OPTIONS[command]
    flags = draw(st.lists(st.sampled_from(options), max_size=4, unique=True)) if options else []
    args = [command]
    for flag, takes_value in flags:
        args.append(flag)
        if takes_value:
            args.append(draw(st.sampled_from(VALUES)))
    if command in POSITIONALS:
        args += draw(st.lists(st.sampled_from(VALUES), max_size=2))
    if command == "run" and draw(st.booleans()):  # real data, one tiny trial at most
        args += ["--data", "{data}", "--budget", "smoke", "--space", "{space}", "--trials", "1",
                 "--epochs", "1", "--train-subset", "16", "--no-progress"]
    return args


@contextlib.contextmanager
def _in(folder: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def test_a_refused_trials_csv_opens_no_study(tmp_path: Path) -> None:
    """Found by the random-arguments test below: `trials --csv FILE/sub.html` on an existing
    SQLite study opened it (its WAL files appeared) before refusing the path."""
    url = f"sqlite:///{tmp_path}/s.db"
    # made in another process, which closes the file on exit: no WAL files before the command
    subprocess.run([sys.executable, "-c", "import sys, optuna; from cifar_search.search.storage"
                    " import open_storage; optuna.create_study(study_name='s', "
                    "storage=open_storage(sys.argv[1]))", url], check=True)
    (tmp_path / "file").write_text("x")
    before = _tree(tmp_path)
    assert before == {"s.db", "file"}
    code = main(["trials", "--study", "s", "--storage", url, "--csv",
                 str(tmp_path / "file" / "sub.html")])
    assert code == 2 and _tree(tmp_path) == before


# derandomize: the same 60 argument lists on every run, so the suite cannot fail by what is
# drawn; a new case found elsewhere goes into the lists above (or an @example) and stays
@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=argv())
def test_random_arguments_end_in_one_line_and_refusals_make_nothing(
    tmp_path: Path, synthetic_npz: Path, tiny_space: Path, args: list[str]
) -> None:
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir(exist_ok=True)
    (fixtures / "file").write_text("x")
    (fixtures / "folder").mkdir(exist_ok=True)
    work = tmp_path / "a" / "b" / "c" / "work"
    work.mkdir(parents=True, exist_ok=True)
    paths = {"file": fixtures / "file", "folder": fixtures / "folder",
             "missing": fixtures / "missing", "data": synthetic_npz, "space": tiny_space}
    argv = [a.format(**paths) for a in args]
    if argv[0] in ("run", "train", "lr-find", "retrain") and str(synthetic_npz) not in argv:
        argv += ["--data", str(fixtures / "missing" / "cifar10.npz")]  # no download, no training
    if argv[0] in ("run", "train", "lr-find", "retrain"):
        argv += ["--device", "cpu"]
    outside = Path("/tmp/x").exists()
    before = _tree(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    with _in(work), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors exit 2
            code = int(exc.code or 0)
    # 1: a search that ran and stopped (50 infeasible configs in a row under a tiny limit)
    assert code in (0, 1, 2), (argv, code, err.getvalue())
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue())
    if code:
        lines = [line for line in err.getvalue().splitlines() if "error:" in line]
        assert len(lines) == 1, (argv, err.getvalue())
    if code == 2:
        assert _tree(tmp_path) == before, (argv, _tree(tmp_path) - before)  # nothing made
    assert Path("/tmp/x").exists() == outside


def test_an_os_error_on_a_path_not_converted_below_is_still_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cifar_search.cli.space as space_command

    def fails(args: argparse.Namespace) -> int:
        raise PermissionError(13, "Permission denied", "/some/path")

    monkeypatch.setattr(space_command, "run", fails)
    assert main(["space"]) == 2
    assert _one_line_error(capsys) == "cifar-search space: error: /some/path: Permission denied"
