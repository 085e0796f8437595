"""Gradient methods on any model: the declared last stage, any layout, the hook fallback, pytorch-grad-cam's numbers."""

import cv2
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import camloc
from camloc.maps import GradCAM, HiResCAM, LayerCAM
from camloc.maps.hooked import HookedForward
from camloc.models.layers import default_target
from camloc.models.layout import Layout


def _no_hooks(model: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules())


# --- the hook path gives what the traced path gives ------------------------------------------


def _declaring(model: nn.Module, layer: str, channels: int) -> nn.Module:
    """The model with ``camloc_feature_layer()`` declaring ``layer``: its maps then come through a hook."""
    model.camloc_feature_layer = lambda: (layer, Layout(channels=channels))
    return model


@pytest.mark.parametrize(
    "name, layer, channels",
    [("resnet18", "layer4", 512), ("mobilenet_v2", "features.18", 1280)],
)
def test_the_hook_path_equals_the_traced_path(name, layer, channels):
    model = torchvision.models.get_model(name, weights=None, num_classes=6).eval()
    x = torch.randn(2, 3, 64, 64)
    traced = GradCAM(model, layer, fuse_batchnorm=False)
    assert isinstance(traced._run, torch.fx.GraphModule)  # the traced path
    folded = GradCAM(model)(x, topk=2, upsample=False)  # the traced default: the same map, BatchNorm folded
    hooked_method = GradCAM(_declaring(model, layer, channels))
    assert isinstance(hooked_method._run, HookedForward) and hooked_method.target_layer == layer
    hooked = hooked_method(x, topk=2, upsample=False)
    plain = traced(x, topk=2, upsample=False)
    assert torch.equal(hooked.classes, plain.classes) and hooked.raw.abs().max() > 0
    # the same modules on the same tensors: equal up to float summation order
    torch.testing.assert_close(hooked.raw, plain.raw, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(hooked.raw, folded.raw, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(hooked.features, plain.features)
    lc_hooked = LayerCAM(model)(x, classes=[1, 4], upsample=False).raw
    torch.testing.assert_close(lc_hooked, LayerCAM(model, layer, fuse_batchnorm=False)(x, classes=[1, 4]).raw)
    assert _no_hooks(model) and all(p.grad is None for p in model.parameters())


class _Untraceable(nn.Module):
    """Control flow on a tensor and ``len`` of one: torch.fx cannot trace it."""

    def __init__(self, fail_after_features: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1))
        self.fc = nn.Linear(6, 5)
        self.fail_after_features = fail_after_features

    def forward(self, x):
        f = self.features(x)
        if self.fail_after_features:
            raise RuntimeError("inside forward, after the target layer ran")
        if f.sum() > 0 and len(f) > 0:
            f = f * 1.0
        return self.fc(f.mean((2, 3)))


def _reference_gradcam(model: _Untraceable, x: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Grad-CAM by hand: autograd of each image's class logit with respect to the feature map."""
    f = model.features(x).detach().requires_grad_(True)
    logits = model.fc(f.mean((2, 3)))
    (grads,) = torch.autograd.grad(logits[torch.arange(len(x)), classes].sum(), f)
    return torch.einsum("nc,nchw->nhw", grads.mean((2, 3)), f.detach())


def test_an_untraceable_model_runs_through_a_hook_and_keeps_no_hook():
    model = _Untraceable().eval()
    x = torch.randn(2, 3, 12, 10)
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(model)  # the premise: torch.fx fails on it
    method = GradCAM(model, "features", relu=False)
    assert isinstance(method._run, HookedForward)
    out = method(x, classes=[3, 1], upsample=False)
    torch.testing.assert_close(out.raw[:, 0], _reference_gradcam(model, x, [3, 1]))
    assert out.features.shape == (2, 6, 12, 10)
    assert _no_hooks(model) and all(p.grad is None for p in model.parameters())
    # an exception inside forward, after the hook has fired: the hook is gone all the same
    model.fail_after_features = True
    with pytest.raises(RuntimeError, match="inside forward"):
        method(x)
    assert not model.features._forward_hooks and _no_hooks(model)
    # a wrong input fails in the first convolution, before the hooked layer
    model.fail_after_features = False
    with pytest.raises(RuntimeError):
        method(torch.randn(1, 4, 12, 10))
    assert _no_hooks(model)


def test_an_untraceable_model_never_raises_a_trace_error():
    model = _Untraceable().eval()
    with pytest.raises(camloc.HeadNotFound, match=r"^_Untraceable cannot be traced by torch.fx .*target_layer=$"):
        GradCAM(model)
    with pytest.raises(camloc.InvalidArgument, match=r"'feature'.*\(did you mean 'features'\?\)"):
        GradCAM(model, "feature")
    declared = GradCAM(_declaring(model, "features", 6), relu=False)  # a model may declare its layer
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(
        declared(x, classes=[0, 2], upsample=False).raw[:, 0], _reference_gradcam(model, x, [0, 2])
    )


class _PairOutput(nn.Module):
    """A block returning a tuple (feature map, something else), as some timm stages do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, y.flatten(1).sum(1)


class _PairNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = _PairOutput()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        f, extra = self.block(x)
        if len(extra) > 0:  # untraceable: the hook path
            pass
        return self.fc(f.relu().mean((2, 3)))


def test_a_layer_returning_a_tuple_is_cut_at_its_first_element():
    model = _PairNet().eval()
    x = torch.randn(2, 3, 6, 6)
    out = HiResCAM(model, "block", relu=False)(x, classes=2, upsample=False)
    f = model.block.conv(x).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(model.fc(f.relu().mean((2, 3)))[:, 2].sum(), f)
    torch.testing.assert_close(out.raw[:, 0], (g * f.detach()).sum(1))
    assert _no_hooks(model)


def test_a_declared_layer_that_is_no_module_is_refused_in_one_line():
    model = _declaring(_Untraceable(), "head", 6)
    with pytest.raises(camloc.HeadNotFound, match="its camloc_feature_layer\\(\\) names 'head', which is not one"):
        GradCAM(model)


def test_squeeze_and_excitation_pools_are_not_the_head():
    # torchvision's SE blocks pool globally inside every block; the default layer is the last stage's map.
    model = torchvision.models.mobilenet_v3_small(num_classes=4).eval()
    method = GradCAM(model)
    assert method.target_layer == "features.12.2"
    assert GradCAM(model)(torch.randn(1, 3, 64, 64), upsample=False).raw.shape == (1, 1, 2, 2)
    vit = torchvision.models.VisionTransformer(64, 32, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=16)
    assert default_target(vit) == ("encoder.layers.encoder_layer_1.ln_1", Layout(channels=32))
    assert GradCAM(vit.eval())(torch.randn(1, 3, 64, 64), upsample=False).raw.shape == (1, 1, 2, 2)


# --- equal to pytorch-grad-cam with its reshape_transform --------------------------------------


def _peer_raw(peer_name, model, layer, reshape, x, classes):
    """pytorch-grad-cam's map before its ReLU and scaling.

    Its own hooks capture the layer's activations and gradients through ``reshape``, its own
    backward computes them, its own ``get_cam_image`` combines them; only the ReLU, the min-max
    scaling and the resize of its ``__call__`` are left out, because camloc's raw map has none of them
    (``relu=False``).
    """
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with getattr(pytorch_grad_cam, peer_name)(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        targets = [ClassifierOutputTarget(c) for c in classes]
        outputs = cam.activations_and_grads(x)
        model.zero_grad()
        sum(t(o) for t, o in zip(targets, outputs, strict=True)).backward()
        activations = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        return torch.from_numpy(cam.get_cam_image(x, layer, targets, activations, grads, eigen_smooth=False))


def _assert_equal_maps(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    # float32 sums in another order: equal to 1e-5 of the map's range (maps of random models are small)
    assert theirs.abs().max() > 0
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * theirs.abs().max().item())


def _vit():
    timm = pytest.importorskip("timm")
    options = {"img_size": 96, "depth": 2, "embed_dim": 48, "num_heads": 2}
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=7, **options).eval()


def _vit_tokens(t: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's reshape_transform for this ViT: drop the class token, 6 x 6 patches, channels first."""
    return t[:, 1:].reshape(t.shape[0], 6, 6, t.shape[2]).permute(0, 3, 1, 2)


@pytest.mark.peers
@pytest.mark.parametrize("method, peer", [(GradCAM, "GradCAM"), (HiResCAM, "HiResCAM"), (LayerCAM, "LayerCAM")])
def test_class_token_vit_equals_pytorch_grad_cam_with_reshape_transform(method, peer):
    vit = _vit()
    x = torch.randn(2, 3, 96, 96)
    ours = method(vit, relu=False)
    assert ours.target_layer == "blocks.1.norm1"  # pytorch-grad-cam's advice for ViT: blocks[-1].norm1
    out = ours(x, topk=2, upsample=False)
    assert out.raw.shape == (2, 2, 6, 6)
    for j in range(2):
        theirs = _peer_raw(peer, vit, vit.blocks[-1].norm1, _vit_tokens, x, out.classes[:, j].tolist())
        _assert_equal_maps(out.raw[:, j], theirs)
    assert _no_hooks(vit)


def _swin():
    timm = pytest.importorskip("timm")
    options = {"embed_dim": 24, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)}
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=7, **options).eval()


# The default layer (layers.3) and pytorch-grad-cam's advice for Swin (the last block's norm1). Not
# HiResCAM at layers.3: right before Swin's final LayerNorm, whose gradient is orthogonal to its
# centred input, sum_c g_c A_c cancels to ~1e-3 of its terms, and float32 rounding in either library
# shows at 1e-3 of that map: no test of equality.
@pytest.mark.peers
@pytest.mark.parametrize(
    "method, peer, layer",
    [
        (GradCAM, "GradCAM", None),
        (GradCAM, "GradCAM", "layers.3.blocks.0.norm1"),
        (HiResCAM, "HiResCAM", "layers.3.blocks.0.norm1"),
    ],
)
def test_swin_equals_pytorch_grad_cam_with_reshape_transform(method, peer, layer):
    swin = _swin()
    x = torch.randn(2, 3, 224, 224)
    ours = method(swin, layer, relu=False)
    out = ours(x, topk=2, upsample=False)
    assert out.raw.shape == (2, 2, 7, 7)  # the last stage's grid, channels last read as such
    for j in range(2):
        module = swin.get_submodule(ours.target_layer)
        theirs = _peer_raw(peer, swin, module, lambda t: t.permute(0, 3, 1, 2), x, out.classes[:, j].tolist())
        _assert_equal_maps(out.raw[:, j], theirs)
    assert _no_hooks(swin)


def _scaled_like_pytorch_grad_cam(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's finish: ReLU, min-max per map, cv2 bilinear resize to (W, H), min-max again."""
    out = []
    for m in np.maximum(raw, 0):
        m = (m - m.min()) / (m.max() - m.min() + 1e-7)
        out.append(cv2.resize(m.astype(np.float32), (size[1], size[0])))
    out = np.stack(out)
    lo, hi = out.min((1, 2), keepdims=True), out.max((1, 2), keepdims=True)
    return (out - lo) / (hi - lo + 1e-7)


@pytest.mark.peers
def test_vit_equals_pytorch_grad_cam_as_it_is_called():
    # pytorch-grad-cam's public call end to end: its maps are ours after its ReLU, scaling and resize
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    vit = _vit()
    x = torch.randn(2, 3, 96, 96)
    out = GradCAM(vit)(x, topk=1, upsample=False)
    with PeerGradCAM(model=vit, target_layers=[vit.blocks[-1].norm1], reshape_transform=_vit_tokens) as cam:
        theirs = cam(x, targets=[ClassifierOutputTarget(c) for c in out.classes[:, 0].tolist()])
    assert np.abs(theirs - _scaled_like_pytorch_grad_cam(out.raw[:, 0].numpy(), (96, 96))).max() < 1e-4


@pytest.mark.peers
def test_transformers_classifiers_as_they_come_equal_pytorch_grad_cam():
    # a transformers model returns an output object: pytorch-grad-cam needs a model returning logits
    # (hf.as_classifier, the same model) and a reshape_transform; camloc takes the model as it comes
    transformers = pytest.importorskip("transformers")
    from camloc.models import hf

    options = {"image_size": 64, "num_labels": 5}
    vit = transformers.ViTForImageClassification(
        transformers.ViTConfig(
            patch_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, **options
        )
    ).eval()
    swin = transformers.SwinForImageClassification(
        transformers.SwinConfig(patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4, **options)
    ).eval()
    x = torch.randn(2, 3, 64, 64)
    for model, layer, reshape in [
        (vit, "vit.layers.0.layernorm_before", lambda t: t[:, 1:].reshape(2, 4, 4, -1).permute(0, 3, 1, 2)),
        (swin, "swin.layernorm", lambda t: t.reshape(2, 8, 8, -1).permute(0, 3, 1, 2)),  # tokens after the norm
    ]:
        method = GradCAM(model, relu=False)
        assert method.target_layer == layer
        out = method(x, topk=2, upsample=False)
        for j in range(2):
            theirs = _peer_raw(
                "GradCAM", hf.as_classifier(model), model.get_submodule(layer), reshape, x, out.classes[:, j].tolist()
            )
            _assert_equal_maps(out.raw[:, j], theirs)
        assert _no_hooks(model)
