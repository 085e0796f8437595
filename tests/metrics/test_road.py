"""ROAD: the kept pixels, the imputation and the scores equal pytorch-grad-cam 1.5.7's on the same inputs.

pytorch-grad-cam solves the imputation with scipy's spsolve and camloc with conjugate gradients,
so images agree to float rounding; with the same seed of torch's global generator the noise is
the same draws, so even the noisy scores agree.
"""

import numpy as np
import pytest
import torch
from torch import nn

from camloc.errors import InvalidArgument
from camloc.metrics import ROAD_PERCENTILES, road, road_curves
from camloc.metrics.road import linear_imputation, road_keep_masks

pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.metrics.road import (  # noqa: E402
    NoisyLinearImputer,
    ROADCombined,
    ROADLeastRelevantFirst,
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirst,
    ROADMostRelevantFirstAverage,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget  # noqa: E402

pytestmark = pytest.mark.peers


def small_model():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).eval()  # fmt: skip


def smooth_maps(n, size):
    coarse = torch.rand(n, 1, 4, 4)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")[:, 0]


# --------------------------------------------------------------------------------------------
# the pixels kept


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_keep_masks_equal_pytorch_grad_cams_thresholds(order):
    from pytorch_grad_cam.metrics.perturbation_confidence import RemoveLeastRelevantFirst, RemoveMostRelevantFirst

    remover = RemoveMostRelevantFirst if order == "morf" else RemoveLeastRelevantFirst
    maps = torch.cat([torch.rand(3, 17, 13), (torch.rand(2, 17, 13) * 4).round() / 4])  # the last two full of ties
    percentiles = [0, 10, 25, 33.3, 50, 80, 90, 100]
    ours = road_keep_masks(maps, percentiles, order)
    captured = []
    for k, p in enumerate(percentiles):
        for i in range(len(maps)):
            remover(p, lambda _, mask: captured.append(mask.bool()))(None, maps[i])
            assert torch.equal(ours[k, i], captured[-1]), (p, i)
    assert not ours[0].any() and ours[-2].float().mean() > 0.7  # p = 0 keeps nothing, p = 90 most


# --------------------------------------------------------------------------------------------
# the imputation


@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_imputation_equals_spsolve(solver):
    images = torch.randn(3, 3, 20, 24)
    keep = torch.stack(
        [torch.rand(20, 24) > 0.3, smooth_maps(1, 24)[0, :20] < 0.5, torch.zeros(20, 24, dtype=torch.bool)]
    )
    keep[2, 0, 0] = True  # one pixel known: the rest is one big hole
    ours = linear_imputation(images, keep, solver=solver)
    for i in range(3):
        theirs = NoisyLinearImputer(noise=0)(images[i], keep[i].float())
        torch.testing.assert_close(ours[i].float(), theirs, rtol=0, atol=2e-6)


@pytest.mark.parametrize("solver", ["cg", "direct"])
def test_imputation_by_hand(solver):
    # One missing pixel amid known ones is its neighbours' weighted mean: 1/6 direct, 1/12 diagonal.
    image = torch.arange(9.0).view(1, 1, 3, 3)
    keep = torch.ones(1, 3, 3, dtype=torch.bool)
    keep[0, 1, 1] = False
    direct, diagonal = 1 + 3 + 5 + 7, 0 + 2 + 6 + 8
    assert linear_imputation(image, keep, solver=solver)[0, 0, 1, 1].item() == pytest.approx(direct / 6 + diagonal / 12)
    # In a corner only 3 neighbours are in the image: their weights are renormalized (1/6, 1/6, 1/12 of 5/12).
    keep = torch.ones(1, 3, 3, dtype=torch.bool)
    keep[0, 0, 0] = False
    want = (image[0, 0, 0, 1] / 6 + image[0, 0, 1, 0] / 6 + image[0, 0, 1, 1] / 12) / (5 / 12)
    assert linear_imputation(image, keep, solver=solver)[0, 0, 0, 0].item() == pytest.approx(want.item())
    # A constant image stays constant whatever is missing; nothing kept gives zeros (spsolve: NaN).
    keep = torch.rand(1, 3, 3) > 0.5
    keep[0, 2, 2] = True
    assert torch.allclose(
        linear_imputation(torch.full((1, 2, 3, 3), 7.0), keep, solver=solver), torch.tensor(7.0, dtype=torch.float64)
    )
    assert linear_imputation(image, torch.zeros(1, 3, 3, dtype=torch.bool), solver=solver).abs().max() == 0


# --------------------------------------------------------------------------------------------
# the scores


@pytest.mark.parametrize(
    ("reference", "order", "percentile"),
    [(ROADMostRelevantFirst, "morf", 80), (ROADLeastRelevantFirst, "lerf", 20), (ROADMostRelevantFirst, "morf", 35)],
)
@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_one_percentile_equals_pytorch_grad_cam_with_the_same_seed(reference, order, percentile, solver):
    model, images, maps = small_model(), torch.randn(3, 3, 24, 24), smooth_maps(3, 24)
    classes = [1, 4, 0]
    torch.manual_seed(7)
    theirs = reference(percentile)(images, maps.numpy(), [ClassifierOutputTarget(c) for c in classes], model)
    torch.manual_seed(7)
    ours = road_curves(model, images, maps, classes, order=order, percentiles=[percentile], solver=solver)
    torch.testing.assert_close(ours[:, 0], torch.from_numpy(theirs), rtol=0, atol=1e-6)
    without_noise = road_curves(model, images, maps, classes, order=order, percentiles=[percentile], noise=0)
    assert (ours - without_noise).abs().max() > 1e-5  # the noise did something


def test_averages_and_combined_equal_pytorch_grad_cam():
    model, images, maps = small_model(), torch.randn(2, 3, 20, 20), smooth_maps(2, 20)
    classes = torch.tensor([2, 3])
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    torch.manual_seed(3)
    combined = ROADCombined()(images, maps.numpy(), targets, model)
    torch.manual_seed(3)
    ours = road(model, images, maps, classes)
    torch.testing.assert_close(ours["road_combined"], torch.from_numpy(combined), rtol=0, atol=1e-6)
    for key, reference in (("road_lerf", ROADLeastRelevantFirstAverage), ("road_morf", ROADMostRelevantFirstAverage)):
        torch.manual_seed(3)
        theirs = reference(list(ROAD_PERCENTILES))(images, maps.numpy(), targets, model)
        torch.manual_seed(3)
        order = key.removeprefix("road_")
        mean = road_curves(model, images, maps, classes, order=order).mean(dim=1)  # type: ignore[arg-type]
        torch.testing.assert_close(mean, torch.from_numpy(theirs), rtol=0, atol=1e-6)


def test_probability_score_equals_the_softmax_target():
    model, images, maps = small_model(), torch.randn(2, 3, 16, 16), smooth_maps(2, 16)
    theirs = ROADMostRelevantFirst(50)
    theirs.perturbation.imputer.noise = 0
    want = theirs(images, maps.numpy(), [ClassifierOutputSoftmaxTarget(1)] * 2, model)
    ours = road_curves(model, images, maps, 1, percentiles=[50], score="probability", noise=0)
    torch.testing.assert_close(ours[:, 0], torch.from_numpy(want), rtol=0, atol=1e-6)
    assert np.abs(want).max() > 1e-4


def test_a_private_generator_gives_reproducible_noise_and_bad_arguments_are_refused():
    model, images, maps = small_model(), torch.randn(1, 3, 12, 12), smooth_maps(1, 12)
    runs = [road_curves(model, images, maps, 0, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*runs)
    with pytest.raises(InvalidArgument, match="order"):
        road_curves(model, images, maps, 0, order="first")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="percentiles"):
        road_curves(model, images, maps, 0, percentiles=[120])
    with pytest.raises(InvalidArgument, match="score"):
        road_curves(model, images, maps, 0, score="loss")  # type: ignore[arg-type]
