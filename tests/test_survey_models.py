"""The survey's verdicts (benchmarks/survey_verdicts.py) on hand-built models whose right verdict is known."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))  # the scripts import each other
import survey_models  # noqa: E402
import survey_verdicts as survey  # noqa: E402

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # a stride-4 convolution: an 8x8 grid


class Boom(nn.Module):
    """Traces (torch.fx records a method call), fails when run: a tensor has no method ``boom``."""

    def forward(self, x):
        return x.boom()


def net(*head: nn.Module, body: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, *([body] if body is not None else []), *head).eval()


def gap_linear(*, body: nn.Module | None = None) -> nn.Module:
    return net(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5), body=body)


def test_a_gap_linear_cnn_is_exact_on_its_grid_and_its_gradcam_ok():
    cam = survey.classify_cam(gap_linear(), X, [(8, 8)], timing=False)
    assert (cam.outcome, cam.grid, cam.detail) == ("exact", (8, 8), "")  # the offset is the Linear's bias
    grad = survey.classify_gradcam(gap_linear(), X, [(8, 8)], timing=False)
    assert (grad.outcome, grad.grid) == ("ok", (8, 8))


def test_a_norm_between_pooling_and_classifier_is_linearized():
    model = net(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(8), nn.Linear(8, 5))
    cam = survey.classify_cam(model, X, [(8, 8)], timing=False)
    assert (cam.outcome, cam.grid) == ("linearized", (8, 8))


def test_an_affine_head_is_exact_though_its_offset_is_not_the_linear_bias():
    norm = nn.BatchNorm1d(8).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in (norm.running_mean, norm.weight, norm.bias):
            t.copy_(torch.randn(8, generator=gen))
    model = net(nn.AdaptiveAvgPool2d(1), nn.Flatten(), norm, nn.Linear(8, 5))
    cam = survey.classify_cam(model, X, [(8, 8)], timing=False)
    assert (cam.outcome, cam.detail) == ("exact", "an affine head: the offset is not the Linear's bias")


def test_maps_off_the_last_stage_grid_are_wrong():
    cam = survey.classify_cam(gap_linear(), X, [(4, 4), (4, 5)], timing=False)
    assert (cam.outcome, cam.grid) == ("wrong", (8, 8))
    assert "grid 8x8, the last stage is 4x4 or 4x5" in cam.detail
    grad = survey.classify_gradcam(gap_linear(), X, [(4, 4)], timing=False)
    assert grad.outcome == "wrong"


def test_a_model_that_raises_crashed_and_one_camloc_declines_is_refused():
    cam = survey.classify_cam(gap_linear(body=Boom()), X, [(8, 8)], timing=False)
    assert (cam.outcome, cam.detail) == ("crashed", "AttributeError: 'Tensor' object has no attribute 'boom'")
    no_gap = net(nn.Flatten(), nn.Linear(8 * 8 * 8, 5))  # no pooling: CAM is undefined
    cam = survey.classify_cam(no_gap, X, [(8, 8)], timing=False)
    assert cam.outcome == "refused" and cam.detail and "\n" not in cam.detail


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("resnet50d", "resnet"),
        ("resnetv2_50x1_bit", "resnetv2"),
        ("tf_efficientnet_b0", "efficientnet"),
        ("legacy_seresnet18", "seresnet"),
        ("mobilenetv4_conv_small", "mobilenetv4"),
        ("inception_next_atto", "inception"),
        ("cs3darknet_s", "cs"),
        ("vit_small_patch16_224", "vit"),
        ("regnetv_040", "regnetv"),
    ],
)
def test_family_names(name, family):
    assert survey_models.family_of(name) == family


def test_the_summary_counts_each_outcome_per_source():
    def record(source, cam, gradcam):
        return {
            "source": source,
            "family": f"{source}-{cam}-{gradcam}",
            "model": "m",
            "cam": {"outcome": cam, "detail": "", "grid": [7, 7]},
            "gradcam": {"outcome": gradcam, "detail": "why | not", "grid": None},
        }

    records = [record("timm", "exact", "ok"), record("timm", "refused", "crashed"), record("hf", "wrong", "ok")]
    text = survey_models.render(records, command="c", run_note="n")
    counts = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| timm families |")}
    # count, CAM exact linearized refused crashed wrong skipped, Grad-CAM ok refused crashed wrong skipped
    assert counts["| timm families"] == "| timm families | 2 | 1 | 0 | 1 | 0 | 0 | 0 | 1 | 0 | 1 | 0 | 0 |"
    assert "| Hugging Face classes | 1 | 0 | 0 | 0 | 0 | 1 | 0 | 1 | 0 | 0 | 0 | 0 |" in text
    assert "gradcam: why \\| not" in text  # a reason's '|' does not break the table
