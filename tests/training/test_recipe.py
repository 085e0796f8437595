"""The fine-tuning recipe's parts: defaults by kind of run, frozen layers, fresh layers at 10x, the
frozen layers' output kept and cropped, Hide-and-Seek, held-out images, exact resume."""

import dataclasses

import numpy as np
import pytest
import torch

import camloc
from camloc.datasets import Dataset, Sample
from camloc.datasets.base import hold_out
from camloc.datasets.synthetic import generate
from camloc.models import build_model
from camloc.models.graph import split_at
from camloc.training.config import FROZEN_STAGE, TrainConfig
from camloc.training.loop import freeze_up_to
from camloc.training.sources import hidden
from camloc.training.train import train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("tiny"), "shapes", train=24, test=8, seed=2)


def _recipe(**kw):
    """The recipe on MobileNetV2, shrunk to seconds: 32-pixel inputs, batches of 8."""
    return TrainConfig(arch="mobilenet_v2", pretrained=True, size=32, batch_size=8, epochs=2, **kw)


def test_defaults_follow_the_kind_of_run():
    scratch = TrainConfig()
    assert (scratch.epochs, scratch.size, scratch.freeze, scratch.augment, scratch.hide) == (30, 64, None, "images", 0)
    assert (scratch.new_lr_scale, scratch.weight_decay, scratch.min_scale, scratch.calibrate) == (1.0, 5e-4, 0.35, 0)
    assert (scratch.wsol_loss, scratch.map_size, scratch.box_images) == (None, None, 0)
    recipe = TrainConfig(arch="mobilenet_v2", pretrained=True)
    assert recipe.recipe and FROZEN_STAGE["mobilenet_v2"] == "features.13"
    assert (recipe.epochs, recipe.size, recipe.freeze, recipe.augment) == (10, 448, "features.13", "features")
    assert (recipe.hide, recipe.new_lr_scale, recipe.weight_decay, recipe.min_scale, recipe.calibrate) == (
        0.0, 10.0, 1e-4, 0.5, 2,
    )  # fmt: skip
    assert (recipe.wsol_loss, recipe.map_size, recipe.box_images) == ("bgc", 640, 400)
    # Without BGC's attentive dropout, Hide-and-Seek does its job; the map size follows the input size.
    plain = TrainConfig(arch="mobilenet_v2", pretrained=True, wsol_loss=None, size=224)
    assert (plain.wsol_loss, plain.hide, plain.map_size) == (None, 0.5, 320)
    # Another pretrained network, or the -GAP variant: fine-tuning defaults without the recipe's cut.
    for other in (TrainConfig(arch="resnet18", pretrained=True), TrainConfig(
        arch="mobilenet_v2", pretrained=True, convert_gap={"layer": "features.13"}
    )):  # fmt: skip
        assert not other.recipe
        assert (other.freeze, other.augment, other.size, other.new_lr_scale, other.hide) == (None, "images", 224, 10, 0)
        assert (other.wsol_loss, other.map_size) == (None, None)
    # Whatever is given explicitly wins.
    mine = TrainConfig(arch="mobilenet_v2", pretrained=True, freeze=None, augment="images", size=224, hide=0.0)
    assert (mine.freeze, mine.augment, mine.size, mine.hide, mine.epochs) == (None, "images", 224, 0.0, 10)
    with pytest.raises(ValueError, match="augment='features' needs freeze="):
        TrainConfig(augment="features")
    with pytest.raises(ValueError, match="hide= must be in"):
        TrainConfig(hide=1.0)
    with pytest.raises(ValueError, match="box_images= must be >= 0, got -1"):
        TrainConfig(box_images=-1)
    with pytest.raises(ValueError, match="map_size= must be None or at least 16, got 8"):
        TrainConfig(map_size=8)


def test_split_at_a_stage_computes_the_model_and_shares_its_parameters(mobilenet):
    first, rest = split_at(mobilenet, "features.13")
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert first(x).shape == (2, 96, 6, 6)
        assert torch.equal(rest(first(x)), mobilenet(x))
    assert {id(p) for p in rest.parameters()} <= {id(p) for p in mobilenet.parameters()}
    with pytest.raises(camloc.HeadNotFound, match="skip connection"):
        split_at(mobilenet, "features.13.conv.0")  # inside a residual block
    gap = build_model("mobilenet_v2", 3, convert_gap={"layer": "features.13", "width": 8}).eval()
    backbone, head = split_at(gap, "backbone")  # a feature extractor's dict: the cut is the one item taken of it
    with torch.no_grad():
        assert backbone(x).shape == (2, 96, 6, 6) and torch.equal(head(backbone(x)), gap(x))


def test_fresh_layers_learn_ten_times_faster_and_frozen_ones_not_at_all():
    model = build_model("mobilenet_v2", 5, pretrained=True)
    assert model.camloc_new == ("classifier.1.weight", "classifier.1.bias")
    gap = build_model("mobilenet_v2", 5, pretrained=True, convert_gap={"layer": "features.13", "width": 8})
    assert gap.camloc_new == ("conv.weight", "conv.bias", "fc.weight", "fc.bias")
    assert build_model("gapnet", 3).camloc_new == tuple(n for n, _ in build_model("gapnet", 3).named_parameters())


def test_hide_and_seek_blanks_whole_cells():
    x = torch.ones(2, 1, 8, 8)
    shown = np.ones((3, 2, 2), bool)
    shown[2, 0, 1] = False  # image 2: the top right quarter hidden
    out = hidden(x, shown, [0, 2])
    assert torch.equal(out[0], x[0])
    assert out[1, 0, :4, 4:].eq(0).all() and out[1].sum() == 48
    assert hidden(x, None, [0, 1]) is x


def test_hold_out_is_per_class_among_boxed_images_and_seeded():
    box = ((0, 0, 1, 1),)
    samples = [Sample(f"{c}-{i}", None, c, box if i < 4 else (), None) for c in range(3) for i in range(6)]
    data = Dataset("d", "csv", None, samples, ["a", "b", "c"])
    rest, val = hold_out(data, 2, seed=5)
    assert len(rest) == 12 and len(val) == 6
    assert sorted(s.label for s in val) == [0, 0, 1, 1, 2, 2] and all(s.boxes for s in val)
    assert {s.image_id for s in rest} | {s.image_id for s in val} == {s.image_id for s in samples}
    assert [s.image_id for s in hold_out(data, 2, seed=5)[1]] == [s.image_id for s in val]
    assert [s.image_id for s in hold_out(data, 2, seed=6)[1]] != [s.image_id for s in val]
    assert len(hold_out(data, 0)[1]) == 0


@pytest.mark.slow
def test_recipe_trains_only_after_the_cut_and_resumes_bit_identically(tiny, tmp_path):
    train_set, _ = tiny
    config = _recipe(calibrate=1)
    start = build_model("mobilenet_v2", 8, pretrained=True).state_dict()
    whole = train(config, train_set, tmp_path / "whole.pt", progress=False)
    assert len(whole.held_out) == 8 and whole.prepare_seconds > 0  # one per class, set apart
    after = whole.model.state_dict()
    frozen = [k for k in start if k.startswith("features.") and int(k.split(".")[1]) <= 13]
    assert frozen and all(torch.equal(start[k], after[k]) for k in frozen)  # weights and BatchNorm statistics
    assert not torch.equal(start["features.14.conv.0.0.weight"], after["features.14.conv.0.0.weight"])
    cut = train(config, train_set, tmp_path / "cut.pt", progress=False, stop_after=1)
    assert len(cut.history) == 1
    resumed = train(config, train_set, tmp_path / "cut.pt", resume=True, progress=False)
    assert all(torch.equal(after[k], resumed.model.state_dict()[k]) for k in after)
    assert [h["loss"] for h in whole.history] == [h["loss"] for h in resumed.history]
    with pytest.raises(ValueError, match="was trained with hide=0.0, not 0.25"):
        train(dataclasses.replace(config, hide=0.25), train_set, tmp_path / "cut.pt", resume=True, progress=False)


def test_freeze_of_a_missing_module_names_the_one_meant():
    gap = build_model("mobilenet_v2", 3, convert_gap={"layer": "features.13", "width": 8})
    with pytest.raises(ValueError, match=r"GapVariant has no module .*; did you mean 'backbone.features.13'\?"):
        freeze_up_to(gap, "features.13")
    assert all(p.requires_grad for p in gap.parameters())  # nothing frozen by the failed call
    freeze_up_to(gap, "backbone.features.13")
    assert not any(p.requires_grad for p in gap.backbone.parameters()) and gap.conv.weight.requires_grad
