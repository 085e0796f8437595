"""Sanity checks: the similarities against scipy / skimage, the randomisation test against Quantus 0.6's MPRT.

Quantus is the reference of the model parameter randomisation test (its layers, order, seeding and
Spearman correlation, absolute and signed); skimage and scipy of the paper's SSIM and HOG
similarities (as the authors' code computes them); a CNN whose CAMs are its channels (one-hot head)
gives the expected direction: re-drawing the head decorrelates the maps.
"""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from camloc.errors import InvalidArgument
from camloc.maps import CAM
from camloc.metrics.sanity import (
    data_randomisation,
    hog_similarity,
    map_similarities,
    model_randomisation,
    randomisation_layers,
    randomised_models,
    spearman,
    ssim,
)


def small_net(seed=0, classes=5):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes),
    ).eval()  # fmt: skip


def random_maps(n, h, w, seed, levels=None):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, h, w, generator=g)
    return (m * levels).round() / levels if levels else m  # few levels: many ties


def unit(m):
    m = m.astype(np.float64)
    span = m.max() - m.min()
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


# --------------------------------------------------------------------------------------------
# similarities


@pytest.mark.parametrize("levels", [None, 2])
def test_spearman_equals_scipy_with_and_without_ties(levels):
    a, b = random_maps(4, 12, 9, 0, levels), random_maps(4, 12, 9, 1, levels)
    b[0] = a[0] * 2 - a[0].abs()  # a monotone relation and its signs
    for absolute in (False, True):
        ours = spearman(a, b, absolute=absolute)
        f = np.abs if absolute else np.asarray
        theirs = [spearmanr(f(x.flatten().numpy()), f(y.flatten().numpy()))[0] for x, y in zip(a, b, strict=True)]
        torch.testing.assert_close(ours, torch.tensor(theirs, dtype=torch.float64), rtol=0, atol=1e-12)


def test_spearman_of_a_constant_map_is_nan_and_of_a_monotone_one_is_one():
    a = random_maps(2, 5, 5, 3)
    b = torch.stack([torch.zeros(5, 5), a[1].exp()])
    assert spearman(a, b).isnan().tolist() == [True, False] and spearman(a, b)[1].item() == pytest.approx(1.0)


def test_ssim_equals_skimage_gaussian_on_min_max_normalized_maps():
    from skimage.metrics import structural_similarity

    a, b = random_maps(3, 24, 31, 4), random_maps(3, 24, 31, 5)
    b[1] = a[1] + 0.3 * b[1]  # a similar pair
    b[2] = 0  # a constant map becomes 0
    theirs = [
        structural_similarity(unit(x.numpy()), unit(y.numpy()), gaussian_weights=True, data_range=1.0)
        for x, y in zip(a, b, strict=True)
    ]
    torch.testing.assert_close(ssim(a, b), torch.tensor(theirs, dtype=torch.float64), rtol=0, atol=1e-12)
    assert ssim(a, a * 5 - 2).tolist() == pytest.approx([1.0] * 3)
    with pytest.raises(InvalidArgument, match="at least 11 x 11"):
        ssim(a[:, :10], b[:, :10])


def test_hog_similarity_equals_scipy_spearman_of_skimage_hog():
    from skimage.feature import hog

    a, b = random_maps(2, 64, 80, 6), random_maps(2, 64, 80, 7)
    b[0] = a[0] + 0.5 * b[0]
    theirs = [
        spearmanr(hog(unit(x.numpy()), pixels_per_cell=(16, 16)), hog(unit(y.numpy()), pixels_per_cell=(16, 16)))[0]
        for x, y in zip(a, b, strict=True)
    ]
    torch.testing.assert_close(hog_similarity(a, b), torch.tensor(theirs, dtype=torch.float64), rtol=0, atol=1e-12)
    assert hog_similarity(a[:, :40], b[:, :40]).isnan().all()  # no 48-pixel block


def test_map_similarities_of_a_map_with_itself_are_one():
    a = random_maps(2, 48, 48, 8)
    got = map_similarities(a, a)
    assert list(got) == ["spearman_abs", "spearman", "ssim", "hog"]
    for values in got.values():
        assert values.tolist() == pytest.approx([1.0, 1.0])


# --------------------------------------------------------------------------------------------
# randomisation


def test_layers_go_from_the_head_down_grouped_by_name_depth():
    net = small_net()
    assert randomisation_layers(net, depth=None) == [("7", ["7"]), ("3", ["3"]), ("1", ["1"]), ("0", ["0"])]
    assert [n for n, _ in randomisation_layers(nn.Sequential(net, nn.Linear(5, 2)), depth=1)] == ["1", "0"]
    with pytest.raises(InvalidArgument, match="no layer with reset_parameters"):
        randomisation_layers(nn.Sequential(nn.ReLU()))


@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_randomisation_never_touches_the_model_or_the_global_generator_and_repeats(order):
    net = small_net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    first = [
        (name, {k: v.clone() for k, v in m.state_dict().items()}) for name, m in randomised_models(net, order, seed=11)
    ]
    again = [
        (name, {k: v.clone() for k, v in m.state_dict().items()}) for name, m in randomised_models(net, order, seed=11)
    ]
    assert torch.equal(torch.get_rng_state(), rng) and net.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    for (n1, s1), (n2, s2) in zip(first, again, strict=True):
        assert n1 == n2 and all(torch.equal(s1[k], s2[k]) for k in s1)
    # cascading keeps the layers re-drawn so far; independent restores them
    last = first[-1][1]
    assert torch.equal(last["7.weight"], before["7.weight"]) == (order == "independent")
    assert not torch.equal(last["0.weight"], before["0.weight"])


@pytest.mark.parametrize("order, quantus_order", [("cascading", "top_down"), ("independent", "independent")])
@pytest.mark.parametrize("absolute", [True, False])
def test_model_randomisation_equals_quantus_mprt(order, quantus_order, absolute):
    quantus = pytest.importorskip("quantus")
    net = small_net(1)
    # trained-looking BatchNorm statistics, so that re-drawing it changes the maps
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    net[1].weight.data.uniform_(0.5, 2)
    x = torch.randn(6, 3, 20, 20, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 3, 4, 0])

    def explain(model, inputs, targets, **_):
        out = CAM(model)(torch.as_tensor(inputs), classes=torch.as_tensor(targets)[:, None])
        return out.maps[:, :1].numpy()

    metric = quantus.MPRT(layer_order=quantus_order, seed=6, abs=absolute, disable_warnings=True)
    theirs = metric(net, x.numpy(), y.numpy(), a_batch=None, explain_func=explain, device="cpu")
    ours = model_randomisation(net, ["cam"], x, y, order=order, seed=7, depth=None)["cam"]
    assert list(ours) == ["7", "3", "1", "0"]  # from the head down (Quantus' independent order goes up)
    assert sorted(theirs) == sorted([*ours, "original"])
    key = "spearman_abs" if absolute else "spearman"
    for layer, values in ours.items():
        torch.testing.assert_close(values[key], torch.tensor(theirs[layer], dtype=torch.float64), rtol=0, atol=1e-9)


class Channels(nn.Module):
    """A CNN whose head is one-hot: class c's CAM is feature channel c."""

    def __init__(self, classes=24):
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(nn.Conv2d(3, classes, 5, padding=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(classes, classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(classes))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_cam_decorrelates_when_the_head_is_redrawn_and_not_before():
    net = Channels()
    x = torch.randn(24, 3, 48, 48, generator=torch.Generator().manual_seed(4))
    classes = torch.arange(24)
    got = model_randomisation(net, ["cam"], x, classes, order="independent", depth=1, seed=0)["cam"]
    assert list(got) == ["fc", "features"]
    # the head re-drawn: class c's map is a random mixture of the channels, about uncorrelated with channel c
    assert abs(got["fc"]["spearman"].mean().item()) < 0.15
    assert got["fc"]["spearman"].abs().mean().item() < 0.4
    # the same model compared with itself through the data randomisation test: identical maps
    same = data_randomisation(net, Channels(), ["cam", "gradcam"], x, classes)
    for method in ("cam", "gradcam"):
        for values in same[method].values():
            assert values.tolist() == pytest.approx([1.0] * 24)


def test_model_randomisation_of_several_methods_is_deterministic():
    net = small_net(2)
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([1, 3])
    one = model_randomisation(net, ["cam", "gradcam"], x, y, seed=3)
    two = model_randomisation(net, ["cam", "gradcam"], x, y, seed=3)
    assert list(one) == ["cam", "gradcam"] and list(one["cam"]) == ["7", "3", "1", "0"]
    for method in one:
        for layer in one[method]:
            for key, values in one[method][layer].items():
                torch.testing.assert_close(values, two[method][layer][key], equal_nan=True)
    with pytest.raises(InvalidArgument, match="order must be one of cascading, independent"):
        model_randomisation(net, ["cam"], x, y, order="bottom_up")
