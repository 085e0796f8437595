"""`--wsol-loss bgc`: BGC's terms by hand, its network cut, a few steps that lower it, exact resume, a CUB slice."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import camloc
from camloc.cli import main
from camloc.datasets.synthetic import generate
from camloc.models.nets import GapNet
from camloc.training.train import TrainConfig, train
from camloc.training.wsol import Bgc, BgcNet, BgcOptions, attentive_drop, bgc_options, bgc_terms
from tests.conftest import require_shared
from tests.helpers.data import CUB_50, cub_slice

# GapNet's features: the stem (0-2), then six modules a stage; the last stage starts at features.21.
LAYER = "features.23"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("tiny"), "shapes", train=24, test=8, seed=3)


def test_terms_by_hand():
    # Three cells with feature norms 4, 2, 0: min-max normalized 1, 0.5, 0; foreground (> 0.4) the
    # first two, background (< 0.2) the last.
    features = torch.tensor([[[[4.0, 0.0, 0.0]], [[0.0, 2.0, 0.0]]]]).repeat(2, 1, 1, 1)
    sim = torch.tensor([[[[0.8, 0.2, -0.5]], [[0.1, -0.3, -0.6]]]]).repeat(2, 1, 1, 1)
    direction, strength = bgc_terms(features, sim, torch.tensor([0, 1]), BgcOptions(fg=0.4, bg=0.2))
    # label 0: -0.5 - mean(0.8, 0.2); label 1: -0.6 - mean(0.1, -0.3)
    assert direction.tolist() == pytest.approx([-1.0, -0.5])
    # max over classes 0.8, 0.2, -0.5: norm where < 0 (0) minus norm where > 0 (mean of 1 and 0.5)
    assert strength.tolist() == pytest.approx([-0.75, -0.75])
    # no background cell at all: that mean counts as 0
    direction, _ = bgc_terms(features, sim, torch.tensor([0, 1]), BgcOptions(fg=0.4, bg=0.0))
    assert direction.tolist() == pytest.approx([-0.5, 0.1])


def test_attentive_drop_zeroes_only_strong_cells():
    torch.manual_seed(0)
    x = torch.rand(3, 4, 5, 5)
    assert torch.equal(attentive_drop(x, 0.8, 0.0), x)
    dropped = attentive_drop(x, 0.8, 1.0)
    mean = x.mean(1, keepdim=True)
    strong = (mean > 0.8 * mean.amax((2, 3), keepdim=True)).expand_as(x)
    assert torch.equal(dropped[strong], torch.zeros(int(strong.sum())))
    assert torch.equal(dropped[~strong], x[~strong])


def test_bgc_net_gives_the_models_logits_and_the_cosines():
    torch.manual_seed(0)
    net = GapNet(5).eval()
    x = torch.randn(2, 3, 16, 16)
    bgc = BgcNet(net, BgcOptions(layer=LAYER))
    with torch.no_grad():
        logits, features, erased, sim = bgc(x)
        assert torch.allclose(logits, net(x), atol=1e-6)
        assert torch.allclose(features, net.features(x), atol=1e-6)
    assert erased is not None and erased.shape == features.shape
    f = features.permute(0, 2, 3, 1).numpy()
    w = net.fc.weight.detach().numpy()
    cos = f @ w.T / (np.linalg.norm(f, axis=-1, keepdims=True) * np.linalg.norm(w, axis=-1) + 1e-12)
    assert np.allclose(sim.permute(0, 2, 3, 1).numpy(), cos, atol=1e-5)
    # no drop: no second pass
    assert BgcNet(net, BgcOptions(drop=0.0))(x)[2] is None


@pytest.mark.parametrize(
    ("weights", "term"),
    [({}, "loss"), ({"sim": 1.0, "norm": 0.0, "drop": 0.0}, "sim"), ({"sim": 0.0, "norm": 1.0, "drop": 0.0}, "norm"),
     ({"sim": 0.0, "norm": 0.0, "drop": 10.0}, "drop")],
)  # fmt: skip
def test_a_few_steps_lower_the_loss_and_each_term_it_weighs(tiny, weights, term):
    train_set, _ = tiny
    pre = TrainConfig(size=32).preprocess()
    batch = camloc.load_batch([s.path for s in train_set.samples[:16]], pre)
    labels = torch.tensor([s.label for s in train_set.samples[:16]])
    torch.manual_seed(0)
    net = GapNet(8)
    options = BgcOptions(layer=LAYER, warm=0.0, **weights)
    bgc, criterion = BgcNet(net, options), Bgc(options, epochs=1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    history = []
    for _ in range(8):
        torch.manual_seed(1)  # the same attentive-dropout draws every step
        _, loss, terms = criterion(bgc(batch.images), labels, epoch=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append({**terms, "loss": float(loss.detach())})
    assert all(np.isfinite(list(h.values())).all() for h in history)
    assert set(history[0]) == {"ce", "sim", "norm", "loss"} | ({"drop"} if options.drop else set())
    assert history[-1][term] < history[0][term] - 0.1 * abs(history[0][term]) - 0.1


def test_options_are_checked_by_name():
    assert bgc_options(None, "mobilenet_v2").layer == "features.14"
    chosen = bgc_options({"sim": "1.5", "layer": "features.16"}, "mobilenet_v2")
    assert chosen == BgcOptions(sim=1.5, layer="features.16")
    assert bgc_options({"drop": 0}, "gapnet").layer is None  # no drop, no layer needed
    with pytest.raises(camloc.InvalidArgument, match="'norn' is not one of .*did you mean 'norm'"):
        bgc_options({"norn": 1}, "mobilenet_v2")
    with pytest.raises(camloc.InvalidArgument, match="layer=.* for 'gapnet'"):
        TrainConfig(wsol_loss="bgc")
    with pytest.raises(camloc.InvalidArgument, match="wsol_loss= must be one of bgc, not 'BGC'.*did you mean 'bgc'"):
        TrainConfig(wsol_loss="BGC")
    with pytest.raises(camloc.InvalidArgument, match="bg <= fg"):
        bgc_options({"fg": 0.1}, "mobilenet_v2")
    with pytest.raises(camloc.InvalidArgument, match="sim='x' is not a number"):
        bgc_options({"sim": "x"}, "mobilenet_v2")


def _config(**kw):
    options = {"layer": LAYER, "warm": 0.34}
    return TrainConfig(epochs=3, batch_size=8, size=32, seed=11, workers=2, wsol_loss="bgc", wsol_options=options, **kw)


@pytest.mark.slow
def test_resume_with_bgc_gives_the_weights_of_an_uninterrupted_run(tiny, tmp_path):
    train_set, _ = tiny
    whole = train(_config(), train_set, tmp_path / "whole.pt", progress=False)
    train(_config(), train_set, tmp_path / "cut.pt", progress=False, stop_after=1)
    with pytest.raises(ValueError, match="wsol_options"):
        other = dataclasses.replace(_config(), wsol_options={"layer": LAYER, "sim": 1.0})
        train(other, train_set, tmp_path / "cut.pt", resume=True, progress=False)
    resumed = train(_config(), train_set, tmp_path / "cut.pt", resume=True, progress=False)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert whole.history[1:] == [{**h, "seconds": w["seconds"], "images_per_s": w["images_per_s"]}
                                 for h, w in zip(resumed.history[1:], whole.history[1:], strict=True)]  # fmt: skip
    assert set(whole.history[0]["terms"]) == {"ce", "sim", "norm", "drop"}
    plain = train(dataclasses.replace(_config(), wsol_loss=None), train_set, tmp_path / "plain.pt", progress=False)
    assert not torch.equal(a["fc.weight"], plain.model.state_dict()["fc.weight"])  # the loss does change training


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.pretrained
def test_bgc_on_a_cub_slice_through_the_command_line(tmp_path):
    require_shared(CUB_50 / "images.txt")
    data = cub_slice(tmp_path / "cub", classes=5, train=8, test=4)
    model = tmp_path / "m.pt"
    args = ["train", str(data), "--arch", "mobilenet_v2", "--pretrained", "--out", str(model), "--size", "224"]
    args += ["--epochs", "3", "--batch-size", "10", "--new-lr-scale", "1", "--calibrate", "0"]
    assert main([*args, "--wsol-loss", "bgc", "--wsol-option", "warm=0", "--no-eval"]) == 0
    report = json.loads(model.with_suffix(".json").read_text())
    assert report["config"]["wsol_loss"] == "bgc" and report["config"]["wsol_options"] == {"warm": "0"}
    history = report["history"]
    assert all(np.isfinite(list(h["terms"].values())).all() for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["terms"]["sim"] < history[0]["terms"]["sim"]
