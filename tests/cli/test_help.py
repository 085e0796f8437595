"""Help that says what applies: defaults shown, no flags a command ignores, the threshold's frame named."""

import pytest

from camloc.cli import build_parser


def _help(command: str) -> str:
    return build_parser(only=command).commands[command].format_help()


def test_flags_that_do_not_apply_are_not_offered():
    for command in ("features", "finegrained"):
        text = _help(command)
        assert ("--method" in text) == (command == "finegrained") and "--target-layer" not in text
    assert "--method" in _help("explain") and "--target-layer" in _help("evaluate")


@pytest.mark.parametrize("command", ["explain", "evaluate", "faithfulness", "features", "finegrained", "train"])
def test_batch_size_and_format_help_give_their_defaults(command):
    text = " ".join(_help(command).split())
    assert "--batch-size N" in text and "(default: " in text.rsplit("--batch-size N", 1)[1][:120]
    if command != "explain":
        assert "--format" in text and "default: auto" in text


def test_threshold_help_names_what_it_is_a_fraction_of_and_seed_is_explained():
    assert "of the min-max score map (wsol protocol" in " ".join(_help("evaluate").split())
    assert "of the map's max" in " ".join(_help("explain").split())
    for command in ("train", "synth", "finegrained"):
        seed = " ".join(_help(command).split()).rsplit("--seed SEED", 1)[1][:80]
        assert "seed" in seed and "default: 0" in seed
    assert "Default: full" in " ".join(_help("explain").split())
