"""Faithfulness metrics: deletion/insertion (RISE) and average drop / increase (Grad-CAM++).

References are hand numbers or a direct numpy/scipy re-computation on a linear two-class model
whose class-0 logit is a weighted sum of the pixels, so p(class 0) = sigmoid(sum w * x).
"""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torch import nn

import camloc
from camloc.cli import main
from camloc.datasets import Sample, write_csv_dataset
from camloc.metrics.faithfulness import (
    FaithfulnessMetrics,
    average_drop_increase,
    baseline_images,
    deletion_insertion,
    deletion_insertion_curves,
    faithfulness_scores,
    pixel_ranks,
    trapezoid_auc,
)
from camloc.reports.summary import format_table


class Linear2(nn.Module):
    """logits = (sum_c,h,w W * x, 0): p(class 0) = sigmoid(sum W * x), p(class 1) = 1 - that."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x):
        z = (x * self.weight).flatten(1).sum(1)
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def numpy_curves(w, x, saliency, steps, deletion_base, insertion_base):
    """Independent reference: one image (C, H, W) at a time, a python loop over the steps."""
    c, h, w_ = x.shape
    hw = h * w_
    flat = saliency.reshape(-1)
    order = np.lexsort((np.arange(hw), -flat))  # descending saliency, ties by index
    dele, ins = [], []
    for i in range(steps + 1):
        k = (i * hw) // steps
        changed = np.zeros(hw, bool)
        changed[order[:k]] = True
        changed = changed.reshape(1, h, w_)
        d = np.where(changed, deletion_base, x)
        n = np.where(changed, x, insertion_base)
        dele.append(sigmoid((w * d).sum()))
        ins.append(sigmoid((w * n).sum()))
    return np.array(dele), np.array(ins)


def test_hand_built_deletion_and_insertion_with_zero_baseline():
    # 2x2 single-channel image, weights 1: the class-0 logit is the sum of the kept pixels.
    x = torch.tensor([[[[1.0, 2.0], [3.0, -1.0]]]])
    model = Linear2(torch.ones(1, 1, 2, 2))
    saliency = torch.tensor([[[0.1, 0.9], [0.5, 0.2]]])  # order: pixel 1 (2.0), 2 (3.0), 3 (-1.0), 0 (1.0)
    deletion, insertion = deletion_insertion_curves(model, x, saliency, 0, steps=4, baseline="zero")
    z_del = [5.0, 3.0, 0.0, 1.0, 0.0]  # sum 5, minus 2, minus 3, minus -1, minus 1
    z_ins = [0.0, 2.0, 5.0, 4.0, 5.0]
    np.testing.assert_allclose(deletion[0].numpy(), sigmoid(z_del), rtol=1e-6)
    np.testing.assert_allclose(insertion[0].numpy(), sigmoid(z_ins), rtol=1e-6)
    d_auc, i_auc = deletion_insertion(model, x, saliency, 0, steps=4, baseline="zero")
    assert d_auc.item() == pytest.approx(np.trapezoid(sigmoid(z_del), dx=0.25), rel=1e-6)
    assert i_auc.item() == pytest.approx(np.trapezoid(sigmoid(z_ins), dx=0.25), rel=1e-6)
    # the other class's curve is the complement
    d1, _ = deletion_insertion_curves(model, x, saliency, [1], steps=4, baseline="zero")
    np.testing.assert_allclose(d1[0].numpy(), 1 - sigmoid(z_del), rtol=1e-6)


def test_uneven_steps_change_floor_of_the_fraction():
    # 4 pixels in 3 steps: 0, floor(4/3)=1, floor(8/3)=2, then all 4 pixels changed.
    x = torch.tensor([[[[1.0, 2.0], [4.0, 8.0]]]])
    model = Linear2(torch.ones(1, 1, 2, 2))
    saliency = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])  # index order
    deletion, _ = deletion_insertion_curves(model, x, saliency, 0, steps=3, baseline="zero")
    np.testing.assert_allclose(deletion[0].numpy(), sigmoid([15.0, 14.0, 12.0, 0.0]), rtol=1e-6)


def test_ties_are_broken_by_pixel_index():
    assert pixel_ranks(torch.tensor([[3.0, 1.0, 3.0, 1.0, 2.0]])).tolist() == [[0, 3, 1, 4, 2]]
    assert pixel_ranks(torch.zeros(1, 6)).tolist() == [list(range(6))]
    assert pixel_ranks(torch.tensor([[float("nan"), 0.0, -5.0]])).tolist() == [[2, 0, 1]]
    # a constant map deletes in row-major order: first pixel (value 1), then 10, 100, 1000
    x = torch.tensor([[[[1.0, 10.0], [100.0, 1000.0]]]]) / 1000
    model = Linear2(torch.ones(1, 1, 2, 2))
    deletion, insertion = deletion_insertion_curves(model, x, torch.zeros(1, 2, 2), 0, steps=4, baseline="zero")
    np.testing.assert_allclose(deletion[0].numpy(), sigmoid(np.array([1111, 1110, 1100, 1000, 0]) / 1000), rtol=1e-6)
    np.testing.assert_allclose(insertion[0].numpy(), sigmoid(np.array([0, 1, 11, 111, 1111]) / 1000), rtol=1e-6)


@pytest.mark.parametrize("baseline", ["zero", "mean", "blur", ("zero", "blur")])
def test_curves_match_a_numpy_reference(baseline):
    g = torch.Generator().manual_seed(1)
    n, c, h, w = 3, 3, 8, 6
    x = torch.randn(n, c, h, w, generator=g)
    weight = torch.randn(c, h, w, generator=g) * 0.3
    saliency = torch.randn(n, h, w, generator=g).round(decimals=1)  # some ties
    classes = [0, 1, 0]
    model = Linear2(weight)
    deletion, insertion = deletion_insertion_curves(model, x, saliency, classes, steps=7, baseline=baseline, chunk=5)
    del_name, ins_name = (baseline, baseline) if isinstance(baseline, str) else baseline

    def base(img, name):
        if name == "zero":
            return np.zeros_like(img)
        if name == "mean":
            return np.broadcast_to(img.mean(axis=(1, 2), keepdims=True), img.shape)
        # RISE's substrate: 11x11 Gaussian, sigma 5, zero padding, channel by channel
        t = np.arange(11) - 5.0
        k1 = np.exp(-(t**2) / 50.0)
        k2 = np.outer(k1, k1) / np.outer(k1, k1).sum()
        return np.stack([ndimage.convolve(ch, k2, mode="constant", cval=0.0) for ch in img])

    for i in range(n):
        img = x[i].double().numpy()
        d_ref, i_ref = numpy_curves(
            weight.double().numpy(), img, saliency[i].numpy(), 7, base(img, del_name), base(img, ins_name)
        )
        if classes[i] == 1:
            d_ref, i_ref = 1 - d_ref, 1 - i_ref
        np.testing.assert_allclose(deletion[i].numpy(), d_ref, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(insertion[i].numpy(), i_ref, rtol=1e-4, atol=1e-6)
        assert trapezoid_auc(deletion[i]).item() == pytest.approx(np.trapezoid(d_ref, dx=1 / 7), rel=1e-4)


def test_default_baselines_are_rise_zero_for_deletion_and_blur_for_insertion():
    x = torch.randn(2, 3, 8, 8)
    weight = torch.randn(3, 8, 8)
    model = Linear2(weight)
    deletion, insertion = deletion_insertion_curves(model, x, torch.rand(2, 8, 8), 0, steps=4)
    np.testing.assert_allclose(deletion[:, -1].numpy(), [0.5, 0.5], rtol=1e-6)  # all zeros: logit 0
    blurred = baseline_images(x, "blur")
    np.testing.assert_allclose(
        insertion[:, 0].numpy(), sigmoid((blurred * weight).flatten(1).sum(1).numpy()), rtol=1e-5
    )
    image_probs = model(x).softmax(1)[:, 0].detach().numpy()
    np.testing.assert_allclose(deletion[:, 0].numpy(), image_probs, rtol=1e-6)
    np.testing.assert_allclose(insertion[:, -1].numpy(), image_probs, rtol=1e-6)


def test_a_perfect_map_deletes_faster_and_inserts_faster_than_random_maps():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 1, 10, 10, generator=g)
    weight = torch.randn(1, 1, 10, 10, generator=g)
    model = Linear2(weight)
    perfect = (weight * x)[:, 0]  # each pixel's own contribution to the class-0 logit
    d_perfect, i_perfect = deletion_insertion(model, x, perfect, 0, steps=20, baseline="zero")
    randoms = torch.rand(8, 10, 10, generator=g)
    d_random, i_random = deletion_insertion(model, x.expand(8, -1, -1, -1), randoms, 0, steps=20, baseline="zero")
    assert (d_perfect < d_random).all()
    assert (i_perfect > i_random).all()
    d_worst, _ = deletion_insertion(model, x, -perfect, 0, steps=20, baseline="zero")
    assert (d_worst > d_random).all()


def test_average_drop_and_increase_by_hand():
    model = Linear2(torch.ones(1, 1, 2, 2))
    x = torch.ones(2, 1, 2, 2)
    x[1] = -1.0
    maps = torch.tensor(
        [[[0.0, 1.0], [2.0, 4.0]], [[3.0, 3.0], [5.0, 1.0]]]
    )  # min-max: [0, .25, .5, 1], [.5, .5, 1, 0]
    drop, increase = average_drop_increase(model, x, maps, [0, 0])
    y0, o0 = sigmoid(4.0), sigmoid(1.75)
    y1, o1 = sigmoid(-4.0), sigmoid(-2.0)  # masking shrinks the negative evidence: confidence rises
    np.testing.assert_allclose(drop.numpy(), [(y0 - o0) / y0, 0.0], rtol=1e-6)
    assert increase.tolist() == [False, True]
    # the other class: the first image's confidence rises, the second's drops
    drop, increase = average_drop_increase(model, x, maps, [1, 1])
    np.testing.assert_allclose(drop.numpy(), [0.0, (o1 - y1) / (1 - y1)], rtol=1e-6)
    assert increase.tolist() == [True, False]
    # a constant map masks everything to zero; a (N, 1, h, w) map is upsampled to the input first
    drop, _ = average_drop_increase(model, x[:1], torch.full((1, 1, 1, 1), 7.0), [0])
    assert drop.item() == pytest.approx((sigmoid(4.0) - 0.5) / sigmoid(4.0), rel=1e-6)


def test_metrics_accumulate_means_and_percentages():
    metrics = FaithfulnessMetrics()
    assert metrics.compute()["deletion_auc"] is None
    metrics.update(
        torch.tensor([0.1, 0.3]), torch.tensor([0.5, 0.7]), torch.tensor([0.2, 0.0]), torch.tensor([False, True])
    )
    metrics.update(torch.tensor([0.2]), torch.tensor([0.9]), torch.tensor([0.4]), torch.tensor([True]))
    result = metrics.compute()
    assert result["images"] == 3
    assert result["deletion_auc"] == pytest.approx(0.2)
    assert result["insertion_auc"] == pytest.approx(0.7)
    assert result["average_drop"] == pytest.approx(20.0)
    assert result["increase_in_confidence"] == pytest.approx(200 / 3)
    table = format_table({"cam": result})
    assert table.splitlines()[2] == "| cam | 3 | 0.2000 | 0.7000 | 20.00 | 66.67 |"


def test_batched_equals_one_image_at_a_time():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(8)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        bn,
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    bn.running_mean.uniform_(-0.2, 0.2)
    bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    maps = torch.rand(3, 1, 8, 8)  # coarse maps: upsampled to 32x32
    classes = torch.tensor([0, 3, 1])
    together = faithfulness_scores(model, x, maps, classes, steps=6, chunk=64)
    small_chunks = faithfulness_scores(model, x, maps, classes, steps=6, chunk=5)
    for key in together:
        alone = torch.cat(
            [
                faithfulness_scores(model, x[i : i + 1], maps[i : i + 1], classes[i : i + 1], steps=6)[key]
                for i in range(3)
            ]
        )
        if key == "increase":
            assert torch.equal(together[key], alone) and torch.equal(together[key], small_chunks[key])
        else:
            torch.testing.assert_close(together[key], alone, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(together[key], small_chunks[key], rtol=1e-4, atol=1e-5)


def test_bad_arguments_are_rejected():
    model = Linear2(torch.ones(1, 1, 2, 2))
    x = torch.ones(2, 1, 2, 2)
    with pytest.raises(ValueError, match="steps"):
        deletion_insertion(model, x, torch.rand(2, 2, 2), 0, steps=0)
    with pytest.raises(ValueError, match="baseline"):
        deletion_insertion(model, x, torch.rand(2, 2, 2), 0, baseline="noise")
    with pytest.raises(ValueError, match="one index per image"):
        deletion_insertion(model, x, torch.rand(2, 2, 2), [0, 1, 0])
    with pytest.raises(ValueError, match="one map per image"):
        average_drop_increase(model, x, torch.rand(2, 2, 2, 2), 0)


def test_cli_writes_a_table_with_one_row_per_method(tmp_path, capsys):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    samples = []
    for i in range(3):
        path = root / "images" / f"im{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        samples.append(Sample(f"im{i}.png", path, i % 2, (), None))
    samples.append(Sample("gone.png", root / "images" / "gone.png", 1, (), None))  # listed, never written
    write_csv_dataset(samples, root, ["left", "right"])
    factory = tmp_path / "net.py"
    factory.write_text(
        "import torch\n"
        "from torch import nn\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), "
        "nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()\n"
    )
    out, json_path = tmp_path / "res" / "table.md", tmp_path / "res" / "table.json"
    methods = ["cam", "gradcam", "gradcam++", "eigencam"]
    args = [
        "faithfulness",
        str(root),
        "--model",
        f"{factory}:build",
        "--size",
        "32",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
        "--methods",
        ",".join(methods),
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--out",
        str(out),
        "--json",
        str(json_path),
        "--target",
        "label",
    ]
    assert main(args) == 1  # one unreadable image
    captured = capsys.readouterr()
    assert "gone.png" in captured.err and "1 image(s) could not be read" in captured.err
    table = out.read_text()
    assert table in captured.out
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
    assert [r.split("|")[1].strip() for r in rows] == methods
    assert all(r.split("|")[2].strip() == "3" for r in rows)
    result = json.loads(json_path.read_text())
    assert list(result["methods"]) == methods
    assert result["target"] == "label" and result["steps"] == 4
    assert result["baselines"] == {"deletion": "zero", "insertion": "blur"}
    assert [s["image_id"] for s in result["skipped"]] == ["gone.png"]
    for name in methods:
        m = result["methods"][name]
        assert m["images"] == 3
        assert 0 <= m["deletion_auc"] <= 1 and 0 <= m["insertion_auc"] <= 1
        assert 0 <= m["average_drop"] <= 100 and 0 <= m["increase_in_confidence"] <= 100
        assert math.isfinite(m["deletion_auc"])

    with pytest.raises(SystemExit):
        main(["faithfulness", str(root), "--methods", "cam,nope"])
    assert "expected comma-separated methods" in capsys.readouterr().err


def test_each_method_has_a_progress_bar_and_the_cost_is_announced(tmp_path, capsys):
    from torch import nn

    from camloc.evaluation.faithfulness import evaluate_faithfulness
    from camloc.maps import create_method

    paths = []
    for i in range(2):
        paths.append(tmp_path / f"im{i}.png")
        Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8)).save(paths[-1])
    samples = [Sample(p.name, p, 0, (), None) for p in paths]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    methods = {name: create_method(name, model) for name in ("cam", "gradcam")}
    evaluate_faithfulness(samples, model, methods, camloc.Preprocess(size=16), steps=4, progress=True)
    err = capsys.readouterr().err
    for name in methods:
        assert f"{name:>10}: 100%" in err and "2/2" in err
