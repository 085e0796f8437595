"""The Grad-CAM family against pytorch-grad-cam and torchcam, and its own invariants."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import camloc
from camloc.maps import METHODS, ClassTarget, GradCAM, ScoreCAM

PEERS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
}


@pytest.fixture(scope="module")
def photos(mobilenet, tmp_path_factory):
    from skimage import data

    from camloc.reports.figures import save_image

    folder = tmp_path_factory.mktemp("photos")
    paths = [save_image(getattr(data, n)(), folder / f"{n}.png") for n in ("chelsea", "coffee", "astronaut")]
    return camloc.load_batch(paths, camloc.model_info(mobilenet).preprocess).images


def _like_pytorch_grad_cam(raw: np.ndarray, size: int) -> np.ndarray:
    """pytorch-grad-cam's scaling: ReLU, min-max, cv2 bilinear resize, min-max again."""
    out = []
    for m in np.maximum(raw, 0):
        m = (m - m.min()) / (m.max() - m.min() + 1e-7)
        out.append(cv2.resize(m.astype(np.float32), (size, size)))
    out = np.stack(out)
    lo, hi = out.min((1, 2), keepdims=True), out.max((1, 2), keepdims=True)
    return (out - lo) / (hi - lo + 1e-7)


@pytest.mark.peers
@pytest.mark.slow
@pytest.mark.parametrize("name", list(PEERS))
def test_equals_pytorch_grad_cam(name, mobilenet, photos):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    svd = {"sign": "svd"} if name == "eigencam" else {}  # pytorch-grad-cam keeps the SVD's sign
    out = METHODS[name](mobilenet, **svd)(photos, topk=2)
    for j in range(2):
        peer = getattr(pytorch_grad_cam, PEERS[name])
        with peer(model=mobilenet, target_layers=[mobilenet.features[-1]]) as extractor:
            theirs = extractor(photos, targets=[ClassifierOutputTarget(c) for c in out.classes[:, j].tolist()])
        ours = _like_pytorch_grad_cam(out.raw[:, j].numpy(), 224)
        if name == "eigencam":  # a principal component's sign is arbitrary: compare with either sign
            flipped = _like_pytorch_grad_cam(
                -METHODS[name](mobilenet, relu=False, **svd)(photos, topk=1).raw[:, 0].numpy(), 224
            )
            assert min(np.abs(theirs - ours).max(), np.abs(theirs - flipped).max()) < 1e-4
        else:
            # float32 gradients and sums in another order: 1e-4 of the [0, 1] range.
            assert np.abs(theirs - ours).max() < 1e-4
    assert not any(m._forward_hooks or m._backward_hooks for m in mobilenet.modules())


@pytest.mark.peers
@pytest.mark.slow
def test_scorecam_equals_pytorch_grad_cam():
    from pytorch_grad_cam import ScoreCAM as PeerScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = torchvision.models.resnet18(num_classes=5).eval()
    x = torch.randn(2, 3, 64, 64)
    out = ScoreCAM(model, "layer4", chunk=200)(x, topk=1)
    with PeerScoreCAM(model=model, target_layers=[model.layer4]) as extractor:
        theirs = extractor(x, targets=[ClassifierOutputTarget(c) for c in out.classes[:, 0].tolist()])
    assert np.abs(theirs - _like_pytorch_grad_cam(out.raw[:, 0].numpy(), 64)).max() < 1e-4


def test_gradcam_on_a_gap_net_is_cam_up_to_a_constant(mobilenet, photos):
    grad = GradCAM(mobilenet, relu=False)(photos, topk=3)
    cam = camloc.CAM(mobilenet)(photos, topk=3)
    assert torch.equal(grad.classes, cam.classes)
    # Grad-CAM's weights are the classifier's rows divided by h * w = 49.
    assert torch.allclose(grad.raw * 49, cam.raw, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_targets_named_layers_and_models_without_gap_head():
    model = torchvision.models.vgg11(num_classes=4).eval()
    x = torch.randn(2, 3, 64, 64)
    by_default = GradCAM(model)(x, topk=2)  # the last max-pool's output, before VGG's 7x7 adaptive pooling
    named = GradCAM(model, "features.19")(x, topk=2)  # the last ReLU, before that max-pool
    assert by_default.raw.shape == (2, 2, 2, 2) and named.raw.shape == (2, 2, 4, 4)

    def margin(output):  # a callable target: class 1 minus class 0
        return output[1] - output[0]

    out = GradCAM(model, "features.19", relu=False)(x, targets=[margin, margin])
    a = GradCAM(model, "features.19", relu=False)(x, classes=1).raw
    b = GradCAM(model, "features.19", relu=False)(x, classes=0).raw
    assert torch.allclose(out.raw, a - b, atol=1e-5)
    assert out.classes.tolist() == [[-1], [-1]]
    with pytest.raises(ValueError, match="target_layer='nope': not a module of VGG called in forward"):
        GradCAM(model, "nope")
    with pytest.raises(camloc.InvalidArgument, match=r"'feature\.19'.*\(did you mean 'features\.19'\?\)"):
        GradCAM(model, "feature.19")


def test_two_extractors_on_one_model_and_no_hooks_after_errors():
    model = torchvision.models.resnet18(num_classes=4).eval()
    x = torch.randn(1, 3, 64, 64)
    first, second = GradCAM(model, "layer3"), METHODS["layercam"](model, "layer4")
    a1 = first(x).raw
    second(x)
    assert torch.equal(first(x).raw, a1)
    with pytest.raises(RuntimeError):
        first(torch.randn(1, 5, 64, 64))
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())  # no parameter gradients, ever


# Run in a fresh interpreter (the process's peak memory is no measure inside a test run): the
# resident memory after warm-up calls, then after 300 more calls; with one MiB kept per call when
# asked, to show that the measurement sees a leak. Each call's graph holds ~4 MiB of activations.
_GROWTH = """
import sys, torch
from torch import nn
from camloc.maps import GradCAM

def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
).eval()
x = torch.randn(4, 3, 64, 64)
method = GradCAM(model)
kept = []
for _ in range(30):
    method(x, topk=2)
before = resident_mib()
for _ in range(300):
    out = method(x, topk=2)
    if sys.argv[1] == "leak":
        kept.append(torch.ones(2**18))  # 1 MiB a call
print(resident_mib() - before)
"""


def _growth_mib(mode: str) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(camloc.__file__).parents[1]), str(Path.cwd())])}
    done = subprocess.run(
        [sys.executable, "-c", _GROWTH, mode], capture_output=True, text=True, env=env, check=True, timeout=300
    )
    return float(done.stdout.split()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident memory from /proc")
def test_no_memory_growth_over_repeated_calls():
    # A leaked autograd graph per call would be ~4 MiB each: 1.2 GiB over 300 calls.
    assert _growth_mib("plain") < 50
    assert _growth_mib("leak") > 250  # the measurement sees the 300 MiB kept


class _TinyGap(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1))
        self.fc = nn.Linear(6, 7)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def _reference_gradcam(model, x, score):
    """Grad-CAM by hand: autograd of ``score(logits of image i)`` with respect to the feature map, per image."""
    features = model.features(x).detach().requires_grad_(True)
    logits = model.fc(features.mean((2, 3)))
    maps = []
    for i in range(x.shape[0]):
        (grads,) = torch.autograd.grad(score(logits[i]), features, retain_graph=True)
        weights = grads[i].mean((1, 2))
        maps.append(torch.einsum("c,chw->hw", weights, features[i].detach()).relu())
    return torch.stack(maps)


def test_class_and_callable_targets_against_autograd():
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = _TinyGap().eval()
    x = torch.randn(2, 3, 12, 12)
    gradcam = GradCAM(model, model.features[2])
    assert gradcam.target_layer == "features.2"
    expected = torch.stack(
        [_reference_gradcam(model, x, lambda out, c=c: out[c]) for c in (2, 5)], dim=1
    )  # class 2 then 5 for each image
    by_target = gradcam(x, targets=[[ClassTarget(2), 5], [ClassifierOutputTarget(2), ClassTarget(5)]])
    assert torch.allclose(by_target.raw, expected, atol=1e-6)
    assert by_target.classes.tolist() == [[2, 5], [2, 5]]  # class targets are classes
    assert torch.allclose(by_target.scores, by_target.logits.softmax(1)[:, [2, 5]])

    def margin(out):
        return out[5] - out[2]

    custom = gradcam(x, targets=[[margin, 2], [margin, 2]])
    assert torch.allclose(custom.raw[:, 0], _reference_gradcam(model, x, margin), atol=1e-6)
    assert torch.allclose(custom.raw[:, 1], expected[:, 0], atol=1e-6)
    assert custom.classes.tolist() == [[-1, 2], [-1, 2]]
    assert torch.allclose(custom.scores[:, 0], custom.logits[:, 5] - custom.logits[:, 2])
    with pytest.raises(camloc.InvalidArgument, match="targets=: give classes= or targets=, not both"):
        gradcam(x, classes=1, targets=[2, 2])
    with pytest.raises(camloc.InvalidArgument, match="one target or an equal-length"):
        gradcam(x, targets=[2])
    with pytest.raises(camloc.InvalidArgument, match=r"class targets must lie in \[0, 7\)"):
        gradcam(x, targets=[[margin, 9], [margin, 9]])


def test_target_layer_as_module_and_constructor_options():
    model = torchvision.models.resnet18(num_classes=4).eval()
    x = torch.randn(1, 3, 64, 64)
    by_module = GradCAM(model, model.layer3, channels_last=False, fuse_batchnorm=False)
    assert by_module.target_layer == "layer3" and by_module.channels_last is False and not by_module.fuse_batchnorm
    assert torch.allclose(by_module(x).raw, GradCAM(model, "layer3")(x).raw, atol=1e-5)
    assert METHODS["scorecam"](model, model.layer4, chunk=8, channels_last=True).channels_last is True
    with pytest.raises(camloc.InvalidArgument, match="target_layer=: the Conv2d given is not a module of this ResNet"):
        GradCAM(model, nn.Conv2d(3, 3, 1))
    with pytest.raises(camloc.InvalidArgument, match="not a module of this ResNet"):
        GradCAM(model, model)
