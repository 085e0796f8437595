"""TrainConfig's fields are documented once: the docstring's entries are also `camloc train`'s help,
and the command's defaults are the dataclass's."""

import dataclasses

from camloc.cli import build_parser
from camloc.cli.train import CONFIG_FLAGS, train_config
from camloc.training.config import TrainConfig, field_help


def test_every_field_has_one_plain_text_entry():
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert all(field_help(name) for name in fields)
    assert field_help("optimizer") == "sgd (Nesterov momentum when momentum > 0) or adamw."  # markup dropped
    assert field_help("convert_gap").startswith("camloc.models.gap.convert arguments")  # the module of today
    assert field_help("min_scale").endswith('0.5 with augment="features".')  # a code span with quotes inside


def test_the_command_line_takes_help_and_defaults_from_the_config():
    parser = build_parser(only="train")
    command = parser.commands["train"]
    text = " ".join(command.format_help().split())
    for name in CONFIG_FLAGS:
        assert " ".join(field_help(name).rstrip(".").split()) in text, name
    plain = parser.parse_args(["train", "data", "--out", "m.pt"])
    assert train_config(plain) == TrainConfig()  # no flag: the library's defaults
    flags = ["--freeze", "none", "--no-flip", "--convert-gap", "--gap-width", "8", "--batch-size", "5", "--lr", "0.5"]
    given = train_config(parser.parse_args(["train", "data", "--out", "m.pt", *flags]))
    assert given == TrainConfig(freeze=None, hflip=False, convert_gap={"width": 8}, batch_size=5, lr=0.5)
