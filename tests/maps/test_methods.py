"""The Grad-CAM family against pytorch-grad-cam and torchcam, and its own invariants."""

import gc
import resource

import cv2
import numpy as np
import pytest
import torch
import torchvision

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

    out = METHODS[name](mobilenet)(photos, topk=2)
    for j in range(2):
        peer = getattr(pytorch_grad_cam, PEERS[name])
        with peer(model=mobilenet, target_layers=[mobilenet.features[-1]]) as extractor:
            theirs = extractor(photos, targets=[ClassifierOutputTarget(c) for c in out.classes[:, j].tolist()])
        ours = _like_pytorch_grad_cam(out.raw[:, j].numpy(), 224)
        if name == "eigencam":  # a principal component's sign is arbitrary: compare with either sign
            flipped = _like_pytorch_grad_cam(
                -METHODS[name](mobilenet, relu=False)(photos, topk=1).raw[:, 0].numpy(), 224
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
    with pytest.raises(ValueError, match="target layer 'nope' is not a module"):
        GradCAM(model, "nope")


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


@pytest.mark.slow
def test_no_memory_growth_over_repeated_calls():
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(4, 3, 64, 64)
    method = GradCAM(model)
    for _ in range(20):
        method(x, topk=3)
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(200):
        method(x, topk=3)
    gc.collect()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 20_000  # a leaked graph per call would be ~2 MB each: 400 MB over 200 calls


def test_callable_class_target_matches_classes():
    model = torchvision.models.resnet18(num_classes=6).eval()
    x = torch.randn(2, 3, 64, 64)
    by_class = GradCAM(model)(x, classes=[[2, 5], [0, 1]]).raw
    by_target = GradCAM(model)(x, targets=[[ClassTarget(2), ClassTarget(5)], [ClassTarget(0), ClassTarget(1)]]).raw
    assert torch.allclose(by_class, by_target)
