"""Targets beyond one class: several classes, a single logit, segmentation, one target per image.

Each kind against a hand computation on tiny models whose gradients are known, and the segmentation
target against pytorch-grad-cam's on torchvision's FCN.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import camloc
from camloc.maps import CAM, ClassesTarget, GradCAM, HiResCAM, NegativeTarget, ScoreCAM, SegmentationTarget
from camloc.maps.core import output_tensor

from .test_methods import _like_pytorch_grad_cam

DOCS = Path(__file__).resolve().parents[2] / "docs" / "methods.md"


class _Gap(nn.Module):
    """conv -> ReLU -> GAP -> linear: the gradient of logit c at the ReLU's output is ``W[c] / (h w)``."""

    def __init__(self, classes: int = 5, squeeze: bool = False, mlp: bool = False):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, classes)) if mlp else nn.Linear(6, classes)
        self.squeeze = squeeze

    def forward(self, x):
        y = self.fc(self.pool(self.features(x)).flatten(1))
        return y.squeeze(1) if self.squeeze else y


class _TinySegmentation(nn.Module):
    """conv -> ReLU -> 1x1 conv V: per-pixel logits ``y[c] = V[c] . A + b``, so ``dS/dA_k(i, j) = V[c, k] m_ij``."""

    def __init__(self, wrap: str = "out"):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(6, 4, 1)
        self.wrap = wrap

    def forward(self, x):
        y = self.classifier(self.features(x))
        return y if self.wrap == "tensor" else {self.wrap: y}


def _weights(model: _Gap, forms) -> torch.Tensor:
    """``(N, C)`` channel weights ``sum_j a_j W[c_j]`` of one ``(classes, weights)`` per image."""
    w = model.fc.weight.detach()
    return torch.stack([sum(a * w[c] for c, a in zip(cs, ws, strict=True)) for cs, ws in forms])


def _map(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nc,nchw->nhw", weights, features)


def test_cam_of_several_classes_is_the_sum_of_their_cams():
    model = _Gap().eval()
    x = torch.randn(3, 3, 8, 8)
    targets = [ClassesTarget([1, 3]), ClassesTarget([0, 2, 4]), ClassesTarget([1, 3], weights=[2.0, -0.5])]
    out = CAM(model)(x, targets=targets)
    each = CAM(model)(x, classes=[list(range(5))] * 3).raw  # every class's CAM
    forms = [([1, 3], [1, 1]), ([0, 2, 4], [1, 1, 1]), ([1, 3], [2.0, -0.5])]
    summed = torch.stack([sum(a * each[n, c] for c, a in zip(*forms[n], strict=True)) for n in range(3)])
    assert torch.allclose(out.raw[:, 0], summed, atol=1e-5)
    assert torch.allclose(out.raw[:, 0], _map(_weights(model, forms), model.features(x)), atol=1e-5)
    assert out.classes.tolist() == [[-1]] * 3
    logits = model(x).detach()
    assert torch.allclose(out.scores[:, 0], torch.stack([logits[0, [1, 3]].sum(), logits[1, [0, 2, 4]].sum(),
                                                          2 * logits[2, 1] - 0.5 * logits[2, 3]]))  # fmt: skip
    mixed = CAM(model)(x, targets=[[ClassesTarget([1, 3]), 2]] * 3)  # a list per image: a sum and a class
    assert torch.allclose(mixed.raw[:, 0], each[:, 1] + each[:, 3], atol=1e-5)
    assert torch.allclose(mixed.raw[:, 1], each[:, 2], atol=1e-6) and mixed.classes.tolist() == [[-1, 2]] * 3


def test_cam_of_a_sum_of_classes_through_a_nonlinear_head_is_the_sum_of_their_linearized_cams():
    model = _Gap(mlp=True).eval()
    x = torch.randn(2, 3, 8, 8)
    each = CAM(model)(x, classes=[[0, 2, 4]] * 2).raw
    out = CAM(model)(x, targets=[ClassesTarget([0, 2, 4])] * 2)
    assert torch.allclose(out.raw[:, 0], each.sum(dim=1), atol=1e-5)


@pytest.mark.parametrize("method", [GradCAM, HiResCAM])
def test_gradient_methods_explain_a_sum_of_classes_per_image(method):
    model = _Gap().eval()
    x = torch.randn(2, 3, 8, 8)
    out = method(model, "features")(x, targets=[[ClassesTarget([1, 3]), 4], [ClassesTarget([0, 2], [1.0, -2.0]), 1]])
    # at the ReLU's output the gradient of sum_j a_j y[c_j] is sum_j a_j W[c_j] / (h w) at every position
    forms = [([1, 3], [1, 1]), ([0, 2], [1.0, -2.0])]
    features = model.features(x).detach()
    assert torch.allclose(out.raw[:, 0], (_map(_weights(model, forms), features) / 64).relu(), atol=1e-6)
    assert torch.allclose(out.raw[:, 1], (_map(_weights(model, [([4], [1]), ([1], [1])]), features) / 64).relu())
    assert out.classes.tolist() == [[-1, 4], [-1, 1]]


@pytest.mark.parametrize("squeeze", [False, True], ids=["N-1", "N"])
def test_a_single_logit_and_its_negative(squeeze):
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    model = _Gap(classes=1, squeeze=squeeze).eval()
    x = torch.randn(2, 3, 8, 8)
    features, w, logit = model.features(x).detach(), model.fc.weight.detach()[0], model(x).detach().reshape(2)
    positive = _map(w.expand(2, -1), features)
    cam = CAM(model)(x)  # topk=1: the logit
    assert cam.logits.shape == (2, 1) and cam.classes.tolist() == [[0], [0]]
    assert torch.allclose(cam.raw[:, 0], positive, atol=1e-6)
    assert torch.allclose(cam.scores[:, 0], logit.sigmoid())  # a binary head's probability, not softmax's 1
    negative = CAM(model)(x, targets=[NegativeTarget(), NegativeTarget(0)])
    assert torch.allclose(negative.raw[:, 0], -positive, atol=1e-6) and negative.classes.tolist() == [[-1], [-1]]
    assert torch.allclose(negative.scores[:, 0], -logit)
    theirs = CAM(model)(x, targets=[BinaryClassifierOutputTarget(0), BinaryClassifierOutputTarget(1)])
    assert torch.allclose(theirs.raw[:, 0], torch.stack([-positive[0], positive[1]]), atol=1e-6)

    gradcam = GradCAM(model, "features")
    assert torch.allclose(gradcam(x, targets=[0, 0]).raw[:, 0], (positive / 64).relu(), atol=1e-6)
    assert torch.allclose(gradcam(x, targets=[NegativeTarget()] * 2).raw[:, 0], (-positive / 64).relu(), atol=1e-6)
    binary = gradcam(x, targets=[BinaryClassifierOutputTarget(0), BinaryClassifierOutputTarget(1)])
    assert torch.allclose(binary.raw[:, 0], torch.stack([(-positive[0] / 64).relu(), (positive[1] / 64).relu()]))
    with pytest.raises(camloc.InvalidArgument, match="topk must be between 1 and 1"):
        gradcam(x, topk=2)


def test_sums_of_classes_are_refused_in_one_line_when_wrong():
    model = _Gap().eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(camloc.InvalidArgument, match=r"ClassesTarget\(\[1, 9\]\): classes must lie in \[0, 5\)"):
        CAM(model)(x, targets=[ClassesTarget([1, 9])])
    with pytest.raises(camloc.InvalidArgument, match=r"ClassesTarget\(\[1, 9\]\): classes must lie in \[0, 5\)"):
        GradCAM(model)(x, targets=[ClassesTarget([1, 9])])
    with pytest.raises(camloc.InvalidArgument, match="at least one class and one weight per class"):
        ClassesTarget([1, 2], weights=[1.0])
    with pytest.raises(camloc.InvalidArgument, match="must give one score per image, not"):
        GradCAM(model)(x, targets=[lambda out: out])
    with pytest.raises(camloc.InvalidArgument, match="CAM explains classes only .*SegmentationTarget\\(1\\)"):
        CAM(model)(x, targets=[SegmentationTarget(1)])


@pytest.mark.parametrize("wrap", ["out", "logits", "tensor"])
def test_segmentation_targets_per_image_against_the_hand_gradient(wrap):
    model = _TinySegmentation(wrap).eval()
    x = torch.randn(3, 3, 8, 8)
    mask = torch.zeros(8, 8)
    mask[2:5, 1:7] = 1
    box = torch.zeros(8, 8)
    box[2:6, 1:5] = 1  # (x0, y0, x1, y1) = (1, 2, 4, 5), inclusive
    targets = [SegmentationTarget(1, mask), SegmentationTarget(3, box=(1, 2, 4, 5)), SegmentationTarget(0)]
    regions, classes = [mask, box, torch.ones(8, 8)], [1, 3, 0]
    features = model.features(x).detach()
    per_class = torch.stack(
        [
            _map(model.classifier.weight[c, :, 0, 0].detach()[None], features[n : n + 1])[0]
            for n, c in enumerate(classes)
        ]
    )  # fmt: skip  V[c] . A
    grad = GradCAM(model, "features")(x, targets=targets)
    means = torch.stack([m.mean() for m in regions])
    assert torch.allclose(grad.raw[:, 0], (means[:, None, None] * per_class).relu(), atol=1e-6)
    hires = HiResCAM(model, "features")(x, targets=targets)  # element-wise: the region itself shows
    assert torch.allclose(hires.raw[:, 0], (torch.stack(regions) * per_class).relu(), atol=1e-6)
    logits = output_tensor(model(x)).detach()
    expected = torch.stack([(logits[n, c] * m).sum() for n, (c, m) in enumerate(zip(classes, regions, strict=True))])
    assert grad.classes.tolist() == [[-1]] * 3 and torch.allclose(grad.scores[:, 0], expected, atol=1e-5)
    assert grad.logits.shape == (3, 4, 8, 8)
    assert ScoreCAM(model, "features")(x, targets=targets).raw.shape == (3, 1, 8, 8)


def test_segmentation_regions_are_resized_to_the_output():
    mask = torch.zeros(8, 8)
    mask[0:4, 0:2] = 1  # on a frame twice the output's: the output's pixel (0, 0) is covered whole, (1, 0) too
    weights = SegmentationTarget(0, mask.numpy()).weights((4, 4))
    assert torch.equal(weights, mask.reshape(4, 2, 4, 2).mean(dim=(1, 3)))
    assert torch.equal(SegmentationTarget(0, box=(0, 0, 1, 3), size=(8, 8)).weights((4, 4)), weights)
    assert SegmentationTarget(0).weights((4, 4)) is None


def test_segmentation_models_need_targets_and_cam_refuses_them():
    model = _TinySegmentation().eval()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(camloc.InvalidArgument, match=r"targets= needed: the model's output has shape \(2, 4, 8, 8\)"):
        GradCAM(model, "features")(x)
    with pytest.raises(
        camloc.InvalidArgument, match=r"ClassTarget\(1\) is a target of class scores.*SegmentationTarget"
    ):
        GradCAM(model, "features")(x, targets=[[1, SegmentationTarget(1)]] * 2)
    with pytest.raises(camloc.InvalidArgument, match=r"SegmentationTarget\(7\): the class must lie in \[0, 4\)"):
        GradCAM(model, "features")(x, targets=[SegmentationTarget(7)] * 2)
    with pytest.raises(camloc.InvalidArgument, match=r"SegmentationTarget\(0\) needs per-pixel scores"):
        GradCAM(_Gap().eval(), "features")(x, targets=[SegmentationTarget(0)] * 2)
    with pytest.raises(camloc.HeadNotFound, match="_TinySegmentation is a segmentation model: CAM needs"):
        CAM(model)


def test_the_output_tensor_is_read_from_what_models_return():
    y = torch.randn(2, 4)
    assert output_tensor(y) is y and output_tensor({"out": y, "aux": y + 1}) is y and output_tensor({"logits": y}) is y
    assert output_tensor((y, None)) is y and output_tensor(torch.ones(3)).shape == (3, 1)
    modeling_outputs = pytest.importorskip("transformers.modeling_outputs")
    assert output_tensor(modeling_outputs.SemanticSegmenterOutput(logits=y)) is y
    with pytest.raises(camloc.HeadNotFound, match="the model's output is a str, not scores"):
        output_tensor("nope")


@pytest.mark.peers
@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_mobilenet_v3_large"])
def test_segmentation_target_equals_pytorch_grad_cam_on_torchvision(name):
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
    from torchvision.models import segmentation

    model = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=4, aux_loss=False).eval()
    layer = "backbone.layer4" if name == "fcn_resnet50" else "backbone.16"
    x = torch.randn(2, 3, 64, 64)
    mask = np.zeros((64, 64), np.float32)
    mask[10:40, 20:50] = 1

    class OutputOnly(nn.Module):  # pytorch-grad-cam reads a tensor: the "out" of the dict
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, images):
            return self.model(images)["out"]

    ours = GradCAM(model, layer)(x, targets=[SegmentationTarget(2, mask), SegmentationTarget(1, box=(20, 10, 49, 39))])
    with PeerGradCAM(model=OutputOnly(), target_layers=[model.get_submodule(layer)]) as peer:
        theirs = peer(x, targets=[SemanticSegmentationTarget(2, mask), SemanticSegmentationTarget(1, mask)])
    assert ours.raw.amax() > 0 and np.abs(theirs - _like_pytorch_grad_cam(ours.raw[:, 0].numpy(), 64)).max() < 1e-4
    theirs_in_ours = GradCAM(model, layer)(x, targets=[SemanticSegmentationTarget(2, mask)] * 2)
    assert torch.allclose(theirs_in_ours.raw[0], ours.raw[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(camloc.HeadNotFound, match="is a segmentation model: CAM needs"):
        CAM(model)


@pytest.mark.parametrize("name", ["segformer", "upernet"])
def test_hugging_face_segmentation_logits_are_read(name):
    transformers = pytest.importorskip("transformers")
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    if name == "segformer":
        config = transformers.SegformerConfig(
            num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], num_attention_heads=[1, 1],
            mlp_ratios=[2, 2], patch_sizes=[7, 3], strides=[4, 2], decoder_hidden_size=16, num_labels=3,
        )  # fmt: skip
        model, layer = transformers.SegformerForSemanticSegmentation(config).eval(), "decode_head.linear_fuse"
    else:
        backbone = transformers.ConvNextConfig(
            hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], out_features=["stage1", "stage2", "stage3", "stage4"]
        )
        config = transformers.UperNetConfig(
            backbone_config=backbone, hidden_size=16, auxiliary_in_channels=24, num_labels=3, use_auxiliary_head=False
        )
        model, layer = transformers.UperNetForSemanticSegmentation(config).eval(), "decode_head.fpn_bottleneck"
    x = torch.randn(2, 3, 64, 64)
    output = model(x).logits
    mask = np.zeros(tuple(output.shape[-2:]), np.float32)
    mask[: mask.shape[0] // 2] = 1
    method = GradCAM(model, layer)  # torch.fx cannot trace these: the hook path runs them
    ours = method(x, targets=[SegmentationTarget(1, mask)] * 2)

    class LogitsOnly(nn.Module):  # pytorch-grad-cam reads a tensor: the .logits
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, images):
            return self.model(images).logits

    with PeerGradCAM(model=LogitsOnly(), target_layers=[model.get_submodule(layer)]) as peer:
        theirs = peer(x, targets=[SemanticSegmentationTarget(1, mask)] * 2)
    assert ours.logits.shape == output.shape
    assert np.abs(theirs - _like_pytorch_grad_cam(ours.raw[:, 0].numpy(), 64)).max() < 1e-4


@pytest.mark.slow
def test_the_targets_examples_of_the_docs_run():
    text = DOCS.read_text()
    section = text[text.index("\n## Targets\n") :]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) >= 4
    for code in blocks:
        exec(compile(code, "docs/methods.md", "exec"), {})


def test_one_target_serves_every_image():
    model = _Gap().eval()
    x = torch.randn(2, 3, 8, 8)
    one = GradCAM(model)(x, targets=ClassesTarget([1, 3]))
    listed = GradCAM(model)(x, targets=[ClassesTarget([1, 3])] * 2)
    assert torch.equal(one.raw, listed.raw) and torch.equal(CAM(model)(x, targets=2).raw, CAM(model)(x, classes=2).raw)
    assert torch.equal(CAM(model)(x, targets=np.array([1, 4])).classes, torch.tensor([[1], [4]]))


def test_cam_of_a_single_logit_behind_a_nonlinear_head_is_its_linearization():
    """A (N,) output behind an MLP head: CAM weights are d logit / d GAP(f), taken by hand here."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Conv2d(3, 4, 3)
            self.head = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x).mean((2, 3))).squeeze(1)

    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(2, 3, 12, 12)
    out = camloc.CAM(model, relu=False)(x)
    features = model.features(x).detach()
    pooled = features.mean((2, 3)).requires_grad_(True)
    (grad,) = torch.autograd.grad(model.head(pooled).sum(), pooled)
    expected = torch.einsum("nc,nchw->nhw", grad, features)
    assert out.raw.shape == (2, 1, 10, 10)
    torch.testing.assert_close(out.raw[:, 0], expected, rtol=1e-5, atol=1e-6)
