"""`camloc train`: schedule, exact resume, model files that load everywhere, the centre baseline."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image

import camloc
from camloc.datasets import Sample, open_dataset, write_csv_dataset
from camloc.datasets.synthetic import generate
from camloc.evaluation.evaluate import evaluate
from camloc.models import build_model, load_checkpoint
from camloc.training.train import TrainConfig, learning_rate, train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return generate(root, "shapes", train=24, test=8, seed=3)


def _quiet(_text):
    return None


def test_learning_rate_schedule_by_hand():
    c = TrainConfig(epochs=4, lr=0.2, warmup_epochs=1.0)
    steps, total = 10, 40
    assert learning_rate(c, 0, total, steps) == pytest.approx(0.02)  # warm-up starts at lr / 10
    assert learning_rate(c, 5, total, steps) == pytest.approx(0.2 * (0.1 + 0.9 * 0.5))
    assert learning_rate(c, 10, total, steps) == pytest.approx(0.2)  # cosine starts at the peak
    assert learning_rate(c, 25, total, steps) == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    step = dataclasses.replace(c, schedule="step")
    assert [learning_rate(step, s, total, steps) for s in (10, 24, 25, 32, 33, 39)] == pytest.approx(
        [0.2, 0.2, 0.02, 0.02, 0.002, 0.002]
    )
    assert TrainConfig().base_lr == 0.1 and TrainConfig(pretrained=True).base_lr == 0.01
    assert TrainConfig(optimizer="adamw").base_lr == 1e-3


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="optimizer= must be one of sgd, adamw"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(camloc.InvalidArgument, match="arch='nonet'") as err:
        build_model("nonet", 3)
    assert err.value.argument == "arch"


def _config(**kw):
    return TrainConfig(epochs=3, batch_size=8, size=32, seed=11, workers=2, **kw)


@pytest.mark.slow
def test_resume_gives_the_weights_of_an_uninterrupted_run(tiny, tmp_path):
    train_set, _ = tiny
    whole = train(_config(), train_set, tmp_path / "whole.pt", progress=False)
    train(_config(), train_set, tmp_path / "cut.pt", progress=False, stop_after=1)
    with pytest.raises(FileExistsError, match="resume=True"):
        train(_config(), train_set, tmp_path / "cut.pt", progress=False)
    with pytest.raises(ValueError, match="seed=11"):
        train(dataclasses.replace(_config(), seed=12), train_set, tmp_path / "cut.pt", resume=True, progress=False)
    resumed = train(_config(), train_set, tmp_path / "cut.pt", resume=True, progress=False)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["loss"] for h in whole.history] == [h["loss"] for h in resumed.history]
    # The same seed reproduces the run; another seed does not.
    again = train(_config(), train_set, tmp_path / "again.pt", progress=False)
    assert all(torch.equal(a[k], again.model.state_dict()[k]) for k in a)
    other = train(dataclasses.replace(_config(), seed=5), train_set, tmp_path / "other.pt", progress=False)
    assert not torch.equal(a["fc.weight"], other.model.state_dict()["fc.weight"])


def test_model_file_loads_back_with_names_and_preprocessing(tiny, tmp_path):
    train_set, test_set = tiny
    result = train(dataclasses.replace(_config(), epochs=1), train_set, tmp_path / "m.pt", progress=False)
    loaded = camloc.load_model(str(tmp_path / "m.pt"))
    info = camloc.model_info(loaded)
    assert info.class_names == tuple(train_set.class_names)
    assert info.preprocess == camloc.Preprocess(size=32, resize_size=32, mode="squash")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), result.model(x), atol=1e-5)
        # CAM of the trained GAP net: the einsum definition.
        out = camloc.CAM(loaded)(x, topk=2, upsample=False)
        feats = loaded.features(x)
        want = torch.einsum("nck,nkhw->nchw", loaded.fc.weight[out.classes], feats)
    assert torch.allclose(out.raw, want, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        camloc.load_model(str(tmp_path / "nothere.pt"))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a camloc model file"):
        load_checkpoint(tmp_path / "plain.pt")


def test_pretrained_start_keeps_every_tensor_but_the_classifier(mobilenet):
    model = build_model("mobilenet_v2", 5, pretrained=True)
    mine, theirs = model.state_dict(), mobilenet.state_dict()
    assert model.classifier[1].weight.shape == (5, 1280)
    same = [k for k in mine if not k.startswith("classifier.")]
    assert len(same) == len(mine) - 2
    assert all(torch.equal(mine[k], theirs[k]) for k in same)


@pytest.mark.slow
def test_gap_conversion_is_rebuilt_from_the_model_file(tiny, tmp_path):
    train_set, _ = tiny
    config = dataclasses.replace(_config(), arch="resnet18", convert_gap={"layer": "layer3", "width": 16}, epochs=1)
    result = train(config, train_set, tmp_path / "gap.pt", progress=False)
    loaded = load_checkpoint(tmp_path / "gap.pt")
    assert loaded.camloc_gap == {"layer": "layer3", "width": 16, "num_classes": 8, "relu": True}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), result.model(x), atol=1e-5)


def test_center_baseline_scores_centred_boxes(tmp_path):
    """GT boxes that are exactly the centred box of half the side: the baseline finds it at 0.5."""
    (tmp_path / "images").mkdir()
    samples = []
    for i, side in enumerate((100, 200)):
        Image.fromarray(np.full((side, side, 3), 90, np.uint8)).save(tmp_path / "images" / f"{i}.png")
        lo, hi = side // 4, side - side // 4 - 1
        samples.append(Sample(f"{i}.png", None, 0, ((lo, lo, hi, hi),), (side, side)))
    write_csv_dataset(samples, tmp_path, ["thing"])
    data = open_dataset(tmp_path)
    model = build_model("gapnet", 1).eval()
    result = evaluate(data, camloc.CAM(model), camloc.Preprocess(size=64), baseline="center", step=0.05, progress=False)
    curve = result.curves["v1_50"]
    assert result.summary["max_box_acc"] == 100.0
    assert curve[10] == 100.0  # threshold 0.5: the half-side box
    assert curve[0] == 0.0 and curve[19] == 0.0  # the whole image / a tiny box: IoU < 0.5
    assert result.summary["gt_known_loc"] == 0.0  # the paper rule at 0.2 keeps 80 % of the side
    with pytest.raises(ValueError, match="baseline"):
        evaluate(data, camloc.CAM(model), camloc.Preprocess(size=64), baseline="corner", progress=False)


@pytest.mark.slow
def test_short_training_run_localizes_far_better_than_the_centre_box(tmp_path):
    """From scratch, image labels only, about a minute on 2 cores: CAM boxes vs the best fixed centred box."""
    train_set, test_set = generate(tmp_path / "data", "shapes", train=1000, test=200, seed=1)
    config = TrainConfig(epochs=10, seed=0)
    result = train(config, train_set, tmp_path / "m.pt", progress=False)
    from camloc.evaluation.assess import assess

    scores = assess(result.model, test_set, config.preprocess())
    cam, center = scores["cam"]["max_box_acc"], scores["center"]["max_box_acc"]
    assert cam >= center + 25.0 and cam >= 3 * center, (cam, center)
    assert scores["cam"]["max_box_acc_v2"] >= scores["center"]["max_box_acc_v2"] + 20.0
    assert scores["cam"]["cls_top1"] > 100.0 / 8 + 10.0  # well above chance (8 classes)
