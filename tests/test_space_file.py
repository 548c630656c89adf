from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cifar_search.errors import ConfigError
from cifar_search.search.space import DEFAULT_SPACE, UNSET
from cifar_search.search.space_file import (
    apply_overrides,
    dump_space,
    load_space,
    shipped_spaces,
    space_path,
)

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_default_file_is_the_default_space() -> None:
    shipped = ROOT / "cifar_search" / "search" / "spaces" / "default_space.toml"
    assert load_space(shipped) == DEFAULT_SPACE
    assert shipped.read_text() == dump_space(DEFAULT_SPACE), (
        "spaces/default_space.toml is stale: regenerate with `cifar-search space --toml`"
    )


def test_narrow_and_fix(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(
        '[params.family]\nchoices = ["resnet9", "airbench"]\n'
        "[params.lr_sgd]\nlow = 0.05\nhigh = 5.0\n"
        '[params.tta]\nvalue = "flip"\n'
        '[fixed]\n"model.num_classes" = 10\n'
    )
    space = load_space(f)
    assert space.get("family").choices == ("resnet9", "airbench")
    assert (space.get("lr_sgd").low, space.get("lr_sgd").high) == (0.05, 5.0)
    assert space.get("tta").fixed == "flip" and space.get("width").fixed is UNSET
    assert space.fixed_fields == {"model.num_classes": 10}
    assert tomllib.loads(dump_space(space))["params"]["tta"]["value"] == "flip"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[params.widht]\nvalue = 3\n", "unknown param 'widht'"),
        ("[params.width]\nchoices = [7]\n", "params.width.choices has 7"),
        ("[params.width]\nchoices = []\n", "non-empty list"),
        ("[params.dropout]\nlow = 0.5\nhigh = 0.2\n", "empty range"),
        ("[params.dropout]\nlow = 'a'\n", "params.dropout.low must be a number"),
        ("[params.dropout]\nhigh = 0.9\n", "outside the default range"),
        ("[params.dropout]\nlow = 0.1\nhight = 0.2\n", "unknown key params.dropout.hight"),
        ("[params.family]\nlow = 1\n", "categorical"),
        ("[params.family]\ntarget = 'model.width'\n", "cannot be changed"),
        ("[params.tta]\nvalue = 'sideways'\n", "params.tta.value='sideways'"),
        ("[paramz]\n", "unknown top-level key 'paramz'"),
        ('[fixed]\n"model.widthh" = 3\n', "unknown config field"),
        ('[fixed]\n"model.width" = 3\n', "set by param 'width'"),
        ('[fixed]\n"model.num_classes" = "ten"\n', "model.num_classes must be an integer"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_files_are_rejected_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_space(f)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_space("nowhere.toml")


def test_default_file_form_reads_back_unchanged() -> None:
    as_file = tomllib.loads(dump_space(DEFAULT_SPACE))
    assert apply_overrides(DEFAULT_SPACE, as_file) == DEFAULT_SPACE


def test_every_space_file_the_docs_name_is_shipped_and_valid() -> None:
    import re

    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
             *(ROOT / "cifar_search").rglob("*.py")]
    bare = re.compile(r"--space ([a-z_]+)(?![\w./-])")  # a shipped space's name
    named = {m for f in texts for m in bare.findall(f.read_text())}
    shipped = set(shipped_spaces())
    assert "small" in named and {"default_space", "small", "tiny"} <= shipped
    assert named <= shipped, f"named in the docs but not shipped: {sorted(named - shipped)}"
    for name in sorted(shipped):
        load_space(name)  # by name, as --space small: every key of every shipped file is valid


def test_space_by_name_path_or_unknown(tmp_path: Path) -> None:
    assert space_path("small") == ROOT / "cifar_search" / "search" / "spaces" / "small.toml"
    assert load_space("tiny").get("family").fixed == "plain_cnn"
    own = tmp_path / "mine.toml"
    own.write_text('[params.family]\nvalue = "resnet9"\n')
    assert load_space(own).get("family").fixed == "resnet9"
    with pytest.raises(ConfigError, match=r"unknown space 'smal'.*small, tiny"):
        load_space("smal")


def test_the_fast_presets_warm_start_a_study_on_small_toml() -> None:
    from cifar_search.search.space import config_to_params, outside_space
    from cifar_search.train.presets import get_preset

    small = load_space(ROOT / "cifar_search" / "search" / "spaces" / "small.toml")
    assert small.get("family").choices == ("resnet9", "airbench")
    for name in ("davidnet", "era-custom-resnet", "fast94"):
        params = config_to_params(get_preset(name).config, small)
        assert outside_space(params, small) == [], name
    assert outside_space(config_to_params(get_preset("resnet18").config, small), small)
