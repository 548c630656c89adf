"""``cifar-search summary`` and ``cifar-search presets`` through the real entry point."""

from __future__ import annotations

import json

import pytest

from cifar_search.cli.main import main
from cifar_search.train.config import TrainConfig
from cifar_search.train.models import list_models
from cifar_search.train.presets import PRESETS, get_preset


def test_summary_list_names_every_family(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--list"]) == 0
    out = capsys.readouterr().out
    for family in list_models():
        assert family in out
    assert "6,573,120" in out and "11,173,962" in out  # resnet9 and resnet canonical members


def test_summary_of_a_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "--preset", "davidnet"]) == 0
    out = capsys.readouterr().out
    for needle in ("Param #", "Mult-Adds", "Total params: 6,573,120", "Forward FLOPs per image"):
        assert needle in out


def test_summary_of_a_family_with_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["summary", "--family", "resnet", "--width", "8", "--depth", "1,2", "--no-batch-norm"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "width=8" in out and "depth=(1, 2)" in out and "BatchNorm2d" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", "--family", "nope"], "unknown model family 'nope' (known: airbench"),
        (["summary", "--preset", "nope"], "unknown preset 'nope'"),
        (["summary", "--family", "resnet", "--depth", "1,1,1,1,1"],
         "resnet depth must have 1 to 4 stages"),
        (["presets", "show", "nope"], "unknown preset 'nope' (known: ensta-cnn"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_malformed_depth_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["summary", "--family", "resnet", "--depth", "2,x"])
    assert exc.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_presets_lists_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + len(PRESETS) and max(map(len, lines)) <= 100
    for name, line in zip(PRESETS, lines[1:-1], strict=True):
        p = PRESETS[name]
        assert line.startswith(name) and p.config.model.family in line
        assert p.published[:20] in line
    davidnet = lines[1 + list(PRESETS).index("davidnet")]
    assert "6.57M" in davidnet and " 20 " in davidnet and " 512 " in davidnet
    assert main(["presets", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == list(PRESETS)
    assert all(r["source"] == PRESETS[r["name"]].source for r in records)


def test_space_within_100_columns_and_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["space"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 100
    assert "0.1111" in out and "0.1111111" not in out  # 1/9 as a person reads it
    assert main(["space", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    family = next(r for r in rows if r["param"] == "family")
    assert "airbench" in family["values"] and family["when"] == ""


def test_presets_show_prints_the_config_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets", "show", "fast94"]) == 0
    captured = capsys.readouterr()
    assert TrainConfig.from_dict(json.loads(captured.out)) == get_preset("fast94").config
    assert "airbench" in captured.err  # source and notes go to stderr, keeping stdout JSON
