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
    recipe = ["train", "data", "--out", "m.pt", "--arch", "mobilenet_v2", "--pretrained"]
    assert train_config(parser.parse_args(recipe)) == TrainConfig(arch="mobilenet_v2", pretrained=True)
    old = train_config(parser.parse_args([*recipe, "--wsol-loss", "none", "--map-size", "none"]))
    assert (old.wsol_loss, old.hide, old.map_size, old.separate_map_size) == (None, 0.5, None, None)
    mine = train_config(parser.parse_args([*recipe, "--map-size", "512", "--wsol-loss", "bgc"]))
    assert (mine.wsol_loss, mine.hide, mine.map_size, mine.separate_map_size) == ("bgc", 0.0, 512, 512)
    assert train_config(parser.parse_args([*recipe, "--map-size", "448"])).separate_map_size is None
    assert train_config(parser.parse_args([*recipe, "--box-images", "0"])).box_images == 0
