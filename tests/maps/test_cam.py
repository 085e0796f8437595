"""CAM against hand-written feature extractors and einsums, on many architectures (random weights)."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import camloc
from tests.helpers.models import randomize_batchnorm


def _seq(*modules):
    return lambda x: nn.Sequential(*modules)(x)


def _googlenet_features(m):
    return _seq(
        m.conv1,
        m.maxpool1,
        m.conv2,
        m.conv3,
        m.maxpool2,
        m.inception3a,
        m.inception3b,
        m.maxpool3,
        m.inception4a,
        m.inception4b,
        m.inception4c,
        m.inception4d,
        m.inception4e,
        m.maxpool4,
        m.inception5a,
        m.inception5b,
    )


def _inception_features(m):
    return _seq(
        m.Conv2d_1a_3x3,
        m.Conv2d_2a_3x3,
        m.Conv2d_2b_3x3,
        m.maxpool1,
        m.Conv2d_3b_1x1,
        m.Conv2d_4a_3x3,
        m.maxpool2,
        m.Mixed_5b,
        m.Mixed_5c,
        m.Mixed_5d,
        m.Mixed_6a,
        m.Mixed_6b,
        m.Mixed_6c,
        m.Mixed_6d,
        m.Mixed_6e,
        m.Mixed_7a,
        m.Mixed_7b,
        m.Mixed_7c,
    )


# name -> (builder kwargs, feature map by hand, classifier weight (classes, channels))
ARCHS = {
    "resnet18": ({}, lambda m: _seq(*list(m.children())[:-2]), lambda m: m.fc.weight),
    "resnext50_32x4d": ({}, lambda m: _seq(*list(m.children())[:-2]), lambda m: m.fc.weight),
    "wide_resnet50_2": ({}, lambda m: _seq(*list(m.children())[:-2]), lambda m: m.fc.weight),
    "mobilenet_v2": ({}, lambda m: m.features, lambda m: m.classifier[1].weight),
    "efficientnet_b0": ({}, lambda m: m.features, lambda m: m.classifier[1].weight),
    "efficientnet_v2_s": ({}, lambda m: m.features, lambda m: m.classifier[1].weight),
    "densenet121": ({}, lambda m: lambda x: F.relu(m.features(x)), lambda m: m.classifier.weight),
    "googlenet": ({"aux_logits": False, "init_weights": True}, _googlenet_features, lambda m: m.fc.weight),
    "inception_v3": ({"aux_logits": False, "init_weights": True}, _inception_features, lambda m: m.fc.weight),
    "shufflenet_v2_x0_5": (
        {},
        lambda m: _seq(m.conv1, m.maxpool, m.stage2, m.stage3, m.stage4, m.conv5),
        lambda m: m.fc.weight,
    ),
    "regnet_y_400mf": ({}, lambda m: _seq(m.stem, m.trunk_output), lambda m: m.fc.weight),
    "mnasnet0_5": ({}, lambda m: m.layers, lambda m: m.classifier[1].weight),
    "squeezenet1_1": ({}, lambda m: m.features, lambda m: m.classifier[1].weight[:, :, 0, 0]),
}


def _close(actual, expected, rel=1e-5):
    scale = expected.abs().max().clamp_min(1e-30)
    return ((actual - expected).abs().max() / scale).item() <= rel


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ARCHS))
def test_cam_equals_einsum_of_classifier_weights(name):
    kwargs, features_of, weight_of = ARCHS[name]
    model = torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs).eval()
    randomize_batchnorm(model)
    x = torch.randn(2, 3, 96, 96)
    cam = camloc.CAM(model)
    out = cam(x, topk=3)

    with torch.no_grad():
        f = features_of(model)(x)
        logits = model(x)
        w = weight_of(model)
    expected = torch.einsum("nkc,nchw->nkhw", w[out.classes], f)
    assert out.raw.shape == expected.shape
    assert _close(out.raw, expected)
    assert _close(out.logits, logits)
    assert torch.equal(out.classes, logits.topk(3, dim=1).indices)
    assert torch.allclose(out.scores, logits.softmax(1).topk(3, dim=1).values, atol=1e-5)
    assert out.maps.shape == (2, 3, 96, 96)
    assert _close(out.maps, F.interpolate(expected, size=(96, 96), mode="bilinear", align_corners=False))
    if name != "squeezenet1_1":  # its head adds the bias and a ReLU before pooling
        # The paper's identity: the spatial mean of M_c plus the bias is the class score.
        bias = dict(model.named_modules())[_classifier_name(model)].bias
        assert _close(out.raw.mean((2, 3)) + bias[out.classes], logits.gather(1, out.classes))


def _classifier_name(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_small", "convnext_tiny"])
def test_nonlinear_head_weights_are_the_head_gradient(name):
    """MobileNetV3's MLP and ConvNeXt's LayerNorm head: w_k^c = d score_c / d GAP(f)_k at this image."""
    model = torchvision.models.get_model(name, weights=None, num_classes=7).eval()
    x = torch.randn(2, 3, 64, 64)
    out = camloc.CAM(model)(x, topk=2)
    assert not camloc.CAM(model).adapter.is_linear

    f = model.features(x).detach()
    pooled = f.mean((2, 3)).requires_grad_(True)
    logits = model.classifier(pooled[:, :, None, None] if name == "convnext_tiny" else pooled)
    for j in range(2):
        weights = torch.stack(
            [torch.autograd.grad(logits[i, out.classes[i, j]], pooled, retain_graph=True)[0][i] for i in range(2)]
        )
        expected = torch.einsum("nc,nchw->nhw", weights, f)
        assert _close(out.raw[:, j], expected, rel=1e-4)
    assert _close(out.logits, logits.detach())


def test_batchnorm_folding_is_exact_and_follows_weight_updates():
    model = torchvision.models.resnet18(num_classes=5).eval()
    randomize_batchnorm(model)
    x = torch.randn(2, 3, 64, 64)
    fused, plain = camloc.CAM(model), camloc.CAM(model, fuse_batchnorm=False)
    assert fused.fuse_batchnorm and not plain.fuse_batchnorm
    before = plain(x, classes=[[0, 1, 2, 3, 4]] * 2).raw
    assert _close(fused(x, classes=[[0, 1, 2, 3, 4]] * 2).raw, before)
    with torch.no_grad():
        model.layer4[1].bn2.running_var.mul_(4.0)  # in-place updates the folded copy must notice
        model.layer1[0].conv1.weight.mul_(-1.0)
    after = plain(x, classes=[[0, 1, 2, 3, 4]] * 2).raw
    assert not _close(after, before, rel=1e-2)
    assert _close(fused(x, classes=[[0, 1, 2, 3, 4]] * 2).raw, after)


def test_top5_is_one_forward_and_equals_five_top1_calls():
    model = torchvision.models.mobilenet_v2(num_classes=20).eval()
    x = torch.randn(3, 3, 64, 64)
    cam = camloc.CAM(model, fuse_batchnorm=False)  # so that the model's own modules run and can be counted
    calls = []
    model.features[0][0].register_forward_hook(lambda *a: calls.append(1))  # the first conv
    top5 = cam(x, topk=5)
    assert len(calls) == 1
    for j in range(5):
        single = cam(x, classes=top5.classes[:, j])
        assert torch.allclose(single.raw[:, 0], top5.raw[:, j], atol=1e-6)


@pytest.mark.slow
def test_classes_named_by_caller():
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    cam = camloc.CAM(model)
    every = cam(x, topk=10)
    same = cam(x, classes=4)
    per_image = cam(x, classes=[1, 7])
    lists = cam(x, classes=[[0, 9], [3, 3]])

    def raw_of(c):
        position = (every.classes[:, None, :] == torch.as_tensor(c)[..., None]).float().argmax(-1)
        return every.raw[torch.arange(2)[:, None], position]

    assert same.classes.tolist() == [[4], [4]]
    assert torch.allclose(same.raw[:, 0], raw_of([[4], [4]])[:, 0], atol=1e-6)
    assert torch.allclose(per_image.raw[:, 0], raw_of([[1], [7]])[:, 0], atol=1e-6)
    assert torch.allclose(lists.raw, raw_of([[0, 9], [3, 3]]), atol=1e-6)
    assert torch.allclose(lists.scores, every.logits.softmax(1).gather(1, torch.tensor([[0, 9], [3, 3]])))
    with pytest.raises(ValueError, match="classes must lie in"):
        cam(x, classes=10)
    with pytest.raises(ValueError, match="one index or one list of indices per image"):
        cam(x, classes=[1, 2, 3])
    with pytest.raises(ValueError, match="topk must be between 1 and 10"):
        cam(x, topk=11)


def test_relu_and_normalization_options():
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    raw = camloc.CAM(model)(x, topk=2).raw
    relu_minmax = camloc.CAM(model, relu=True, normalize="minmax")(x, topk=2)
    r = raw.relu().flatten(2)
    expected = (r - r.min(-1, keepdim=True).values) / (r.max(-1, keepdim=True).values - r.min(-1, keepdim=True).values)
    assert torch.allclose(relu_minmax.raw.flatten(2), expected, atol=1e-6)
    m = relu_minmax.maps.flatten(2)
    assert torch.allclose(m.amin(-1), torch.zeros(2, 2)) and torch.allclose(m.amax(-1), torch.ones(2, 2))
    max_only = camloc.CAM(model, normalize="max")(x, topk=2).raw.flatten(2)
    assert torch.allclose(max_only, raw.flatten(2) / raw.flatten(2).amax(-1, keepdim=True), atol=1e-6)
    with pytest.raises(ValueError, match="normalize"):
        camloc.CAM(model, normalize="sigmoid")


class FunctionalMean(nn.Module):
    """A custom net pooling with x.mean((2, 3)) and classifying with view + nn.Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def features(self, x):
        return F.relu(self.bn(self.conv(x)))

    def forward(self, x):
        f = self.features(x).mean((2, 3))
        return self.fc(f.view(f.size(0), -1))


class FunctionalPool(FunctionalMean):
    def forward(self, x):
        f = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.fc(F.dropout(torch.flatten(f, 1), 0.5, self.training))


class Untraceable(FunctionalMean):
    """Data-dependent control flow defeats torch.fx: the adapter falls back to a pooling hook."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.explode = False

    def forward(self, x):
        f = self.features(x)
        if f.sum() < -1e30:
            f = -f
        p = self.pool(f).flatten(1)
        if self.explode:
            raise RuntimeError("boom")
        return self.fc(p)


@pytest.mark.parametrize("cls", [FunctionalMean, FunctionalPool, Untraceable])
def test_custom_models(cls):
    model = cls().eval()
    x = torch.randn(3, 3, 20, 20)
    out = camloc.CAM(model)(x, topk=2)
    with torch.no_grad():
        expected = torch.einsum("nkc,nchw->nkhw", model.fc.weight[out.classes], model.features(x))
        assert _close(out.raw, expected)
        assert _close(out.logits, model(x))


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_no_hooks_left_even_when_forward_raises():
    model = Untraceable().eval()
    before = _hooks(model)
    cam = camloc.CAM(model)
    assert "hook" in cam.adapter.description
    cam(torch.randn(1, 3, 8, 8))
    assert _hooks(model) == before
    model.explode = True
    with pytest.raises(RuntimeError, match="boom"):
        cam(torch.randn(1, 3, 8, 8))
    assert _hooks(model) == before == 0

    tv = torchvision.models.mobilenet_v2(num_classes=3).eval()
    cam = camloc.CAM(tv)
    cam(torch.randn(1, 3, 32, 32), topk=2)
    with pytest.raises(RuntimeError):
        cam(torch.randn(1, 5, 32, 32))  # wrong channel count: raises inside forward
    assert _hooks(tv) == 0


def test_construction_runs_no_forward():
    model = torchvision.models.resnet18(num_classes=3).eval()
    calls = []
    model.conv1.register_forward_hook(lambda *a: calls.append(1))
    camloc.CAM(model)
    assert calls == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg11", "alexnet"])
def test_models_without_gap_head_get_a_clear_error(name):
    model = torchvision.models.get_model(name, weights=None, num_classes=3)
    with pytest.raises(camloc.HeadNotFound, match="global-average-pooling \\+ linear head.*Grad-CAM"):
        camloc.CAM(model)


@pytest.mark.slow
def test_timm_models():
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnet18", pretrained=False, num_classes=6).eval()
    x = torch.randn(2, 3, 64, 64)
    cam = camloc.CAM(model)
    assert cam.adapter.is_linear
    out = cam(x, topk=3)
    with torch.no_grad():
        expected = torch.einsum("nkc,nchw->nkhw", model.get_classifier().weight[out.classes], model.forward_features(x))
        assert _close(out.raw, expected)
        assert _close(out.logits, model(x))

    convnext = timm.create_model("convnext_atto", pretrained=False, num_classes=6).eval()
    out = camloc.CAM(convnext)(x, topk=1)
    f = convnext.forward_features(x).detach().requires_grad_(True)
    logits = convnext.forward_head(f)
    (g,) = torch.autograd.grad(logits.gather(1, out.classes).sum(), f)
    assert _close(out.raw[:, 0], torch.einsum("nc,nchw->nhw", g.sum((2, 3)), f.detach()), rel=1e-4)

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=6, img_size=32).eval()
    with pytest.raises(camloc.HeadNotFound):
        camloc.CAM(vit)(torch.randn(1, 3, 32, 32))


def test_outputs_carry_no_autograd_graph():
    for model in (
        torchvision.models.resnet18(num_classes=4).eval(),
        torchvision.models.mobilenet_v3_small(num_classes=4).eval(),
    ):
        out = camloc.CAM(model)(torch.randn(1, 3, 32, 32), topk=2)
        assert all(not t.requires_grad for t in (out.logits, out.scores, out.raw, out.maps))
