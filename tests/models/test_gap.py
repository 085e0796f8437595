"""camloc.gap.convert: the paper's "-GAP" variants, checked against hand-built compositions (random weights)."""

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import camloc
from camloc.models.gap import GapVariant, convert, default_layer
from tests.helpers.models import randomize_batchnorm


def _close(actual, expected, rel=1e-5):
    scale = expected.abs().max().clamp_min(1e-30)
    return ((actual - expected).abs().max() / scale).item() <= rel


def _googlenet_to_4e(m):
    """GoogLeNet up to inception4e, input transform included, aux heads left out."""
    blocks = nn.Sequential(
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
    )
    return lambda x: blocks(m._transform_input(x))


def _resnet_to_layer3(m):
    return nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3)


# name -> (builder kwargs, layer passed to convert, the kept part by hand, input size, map size)
CASES = {
    "vgg16": ({}, None, lambda m: m.features[:30], 112, 7),  # conv5_3 + ReLU: 14x14 at 224
    "alexnet": ({}, None, lambda m: m.features[:12], 224, 13),
    "googlenet": ({"init_weights": False, "transform_input": True}, None, _googlenet_to_4e, 112, 7),  # 14x14 at 224
    "resnet18": ({}, "layer3", _resnet_to_layer3, 96, 6),
}


@pytest.fixture(scope="module")
def vgg16():
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None, num_classes=10).eval()


def _model(name, vgg16):
    if name == "vgg16":
        return vgg16
    kwargs = CASES[name][0]
    return torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_cam_of_converted_model_equals_einsum_of_the_new_conv(name, vgg16):
    _, layer, kept_by_hand, size, map_size = CASES[name]
    model = _model(name, vgg16)
    randomize_batchnorm(model)
    torch.manual_seed(2)
    gap = convert(model, layer=layer, width=48).eval()
    with torch.no_grad():
        gap.conv.bias.normal_()  # so that the ReLU really cuts something and a dropped bias would show
        gap.fc.bias.normal_()
    x = torch.randn(2, 3, size, size)

    cam = camloc.CAM(gap)
    assert cam.adapter.is_linear and cam.adapter.classifier is gap.fc
    out = cam(x, topk=3)

    with torch.no_grad():
        f = F.relu(F.conv2d(kept_by_hand(model)(x), gap.conv.weight, gap.conv.bias, padding=1))
        logits = f.mean((2, 3)) @ gap.fc.weight.T + gap.fc.bias
    assert f.shape == (2, 48, map_size, map_size)
    assert (f == 0).any() and (f > 0).any()
    expected = torch.einsum("nkc,nchw->nkhw", gap.fc.weight[out.classes], f)
    assert out.raw.shape == (2, 3, map_size, map_size)
    assert _close(out.raw, expected)
    assert _close(out.logits, logits)
    assert _close(gap(x).detach(), logits)
    # The paper's identity holds for the converted net too: mean of M_c plus the bias is the logit.
    assert _close(out.raw.mean((2, 3)) + gap.fc.bias[out.classes], logits.gather(1, out.classes))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("vgg11", "features.19"), ("vgg16_bn", "features.42"), ("alexnet", "features.11"), ("googlenet", "inception4e")],
)
def test_default_layer_is_the_papers_cut(name, expected):
    with torch.device("meta"):  # structure only: no time spent on initializing VGG's big classifier
        model = torchvision.models.get_model(
            name, weights=None, **({} if name == "alexnet" else {"init_weights": False})
        )
    assert default_layer(model) == expected
    # conv5(_3) is followed by its ReLU and then the last max pooling, which is dropped.
    if name != "googlenet":
        index = int(expected.split(".")[1])
        assert isinstance(model.features[index], nn.ReLU)
        assert isinstance(model.features[index - 1 - ("_bn" in name)], nn.Conv2d)
        assert isinstance(model.features[index + 1], nn.MaxPool2d) and index + 2 == len(model.features)


def test_vgg16_default_is_conv5_3_and_keeps_exactly_the_features_before_pool5(vgg16):
    gap = convert(vgg16)
    assert gap.camloc_gap == {"layer": "features.29", "width": 1024, "num_classes": 10, "relu": True}
    assert (gap.conv.in_channels, gap.conv.out_channels, gap.conv.kernel_size) == (512, 1024, (3, 3))
    assert (gap.conv.stride, gap.conv.padding) == ((1, 1), (1, 1))
    assert (gap.fc.in_features, gap.fc.out_features) == (1024, 10)

    original = vgg16.state_dict()
    kept = {k: v for k, v in gap.state_dict().items() if k.startswith("backbone.")}
    assert sorted(k.removeprefix("backbone.") for k in kept) == sorted(
        k for k in original if k.startswith("features.") and int(k.split(".")[1]) < 30
    )
    for k, v in kept.items():
        assert torch.equal(v, original[k.removeprefix("backbone.")])
    assert set(gap.state_dict()) - set(kept) == {"conv.weight", "conv.bias", "fc.weight", "fc.bias"}


def test_kept_weights_are_copies_and_buffers_come_along():
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    randomize_batchnorm(model)
    gap = convert(model, layer="layer3", width=16)
    assert torch.equal(gap.backbone.get_submodule("layer3.1.bn2").running_var, model.layer3[1].bn2.running_var)
    assert "backbone.layer4.0.conv1.weight" not in gap.state_dict() and "backbone.fc.weight" not in gap.state_dict()
    before = model.conv1.weight.clone()
    with torch.no_grad():
        gap.backbone.conv1.weight.add_(1.0)
    assert torch.equal(model.conv1.weight, before)  # fine-tuning the conversion leaves the original alone


def test_modes_follow_the_original_and_survive_deepcopy():
    model = torchvision.models.resnet18(weights=None, num_classes=10).train()
    model.layer1.eval()  # e.g. frozen BatchNorm statistics while fine-tuning
    gap = convert(model, layer="layer3", width=16)
    assert gap.training and gap.backbone.training and gap.conv.training and gap.fc.training
    assert not gap.backbone.layer1.training and not gap.backbone.get_submodule("layer1.0.bn1").training
    assert gap.backbone.get_submodule("layer2.0.bn1").training
    assert model.training and not model.layer1[0].bn1.training and model.layer2[0].bn1.training  # untouched

    randomize_batchnorm(model)
    gap = convert(model.eval(), layer="layer3", width=16)
    assert not any(m.training for m in gap.modules())
    x = torch.randn(2, 3, 64, 64)
    # torchvision's own deepcopy of a feature extractor would put the copy in train mode (batch statistics).
    copied = copy.deepcopy(gap)
    assert not any(m.training for m in copied.modules())
    with torch.no_grad():
        assert torch.equal(copied(x), gap(x))
    copied.train()
    assert all(m.training for m in copy.deepcopy(copied).modules())


def test_googlenet_aux_heads_and_later_blocks_are_dropped():
    model = torchvision.models.googlenet(weights=None, init_weights=False, num_classes=10)  # aux_logits on, training
    gap = convert(model, width=16)
    names = {k.split(".")[1] for k in gap.state_dict() if k.startswith("backbone.")}
    assert "inception4e" in names and not names & {"aux1", "aux2", "inception5a", "inception5b", "fc"}
    assert gap.training
    logits = gap(torch.randn(2, 3, 64, 64))  # train mode: a plain logits tensor, no aux outputs
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "googlenet", "vgg16"])
def test_rebuild_from_camloc_gap_loads_strictly_and_computes_the_same(name, vgg16):
    layer = CASES[name][1]
    first = convert(_model(name, vgg16), layer=layer, width=24, num_classes=7, relu=name != "resnet18").eval()
    with torch.no_grad():  # as if fine-tuned: nothing in the checkpoint equals a fresh init
        for p in first.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    fresh = torchvision.models.get_model(name, weights=None, **CASES[name][0])  # 1000 classes, train mode
    second = convert(fresh, **first.camloc_gap).eval()
    assert isinstance(second, GapVariant) and second.camloc_gap == first.camloc_gap
    assert {k: v.shape for k, v in second.state_dict().items()} == {k: v.shape for k, v in first.state_dict().items()}
    second.load_state_dict(first.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(second(x), first(x))


@pytest.mark.slow
def test_new_layers_init_is_documented_and_follows_the_global_seed():
    model = torchvision.models.resnet18(weights=None)
    torch.manual_seed(5)
    a = convert(model, layer="layer4", width=256)
    torch.manual_seed(5)
    b = convert(model, layer="layer4", width=256)
    c = convert(model, layer="layer4", width=256)
    assert torch.equal(a.conv.weight, b.conv.weight) and torch.equal(a.fc.weight, b.fc.weight)
    assert not torch.equal(a.conv.weight, c.conv.weight)
    # Kaiming normal, fan_out with ReLU gain: std sqrt(2 / (256 * 9)); linear: normal(0, 0.01); zero biases.
    assert a.conv.weight.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.02)
    assert a.fc.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert a.fc.weight.shape == (1000, 256)
    assert not a.conv.bias.any() and not a.fc.bias.any()


def test_relu_false_feeds_the_raw_conv_output_to_the_pooling():
    model = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    gap = convert(model, layer="layer2", width=8, relu=False).eval()
    assert isinstance(gap.relu, nn.Identity)
    x = torch.randn(2, 3, 64, 64)
    out = camloc.CAM(gap)(x, classes=[[0, 1, 2, 3]] * 2)
    with torch.no_grad():
        f = gap.conv(_resnet_to_layer3(model)[:-1](x))
    assert (f < 0).any()
    assert _close(out.features, f)
    assert _close(out.raw, torch.einsum("kc,nchw->nkhw", gap.fc.weight, f))


def test_dtype_follows_the_model_and_a_graph_with_its_own_tensors_is_measured_for_real():
    gap = convert(torchvision.models.resnet18(weights=None).double(), layer="layer1", width=4)
    assert gap.conv.weight.dtype == gap.fc.weight.dtype == torch.float64
    assert gap(torch.randn(1, 3, 32, 32, dtype=torch.float64)).shape == (1, 1000)

    class Normalizing(nn.Module):  # a tensor constant in the traced graph cannot mix with the meta device
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU())
            self.fc = nn.Linear(6, 2)

        def forward(self, x):
            x = x - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)
            return self.fc(self.body(x).mean((2, 3)))

    model = Normalizing().eval()
    gap = convert(model, layer="body", width=5)
    assert (gap.conv.in_channels, gap.fc.out_features) == (6, 2)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        f = F.relu(gap.conv(model.body(x - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))))
        assert _close(gap(x), gap.fc(f.mean((2, 3))))


@pytest.mark.slow
def test_errors_name_the_argument():
    resnet = torchvision.models.resnet18(weights=None)
    with pytest.raises(ValueError, match=r"no default layer for ResNet: pass layer=.*'layer3', 'layer4'") as err:
        convert(resnet)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"layer 'layer5' is not a module of ResNet; try one of .*'layer4'"):
        convert(resnet, layer="layer5")
    with pytest.raises(ValueError, match=r"layer '' is not a module"):
        convert(resnet, layer="")
    with pytest.raises(ValueError, match=r"layer 'fc' of ResNet outputs shape \(1, 1000\), not an \(N, C, H, W\)"):
        convert(resnet, layer="fc")
    with pytest.raises(ValueError, match="width must be a positive int, not 0"):
        convert(resnet, layer="layer4", width=0)
    with pytest.raises(ValueError, match="num_classes must be a positive int, not -1"):
        convert(resnet, layer="layer4", num_classes=-1)
    googlenet = torchvision.models.googlenet(weights=None, init_weights=False)
    with pytest.raises(
        ValueError, match="layer 'aux1' is not called by GoogLeNet.forward in both train and eval"
    ) as err:
        convert(googlenet, layer="aux1")  # only called in train mode
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="SqueezeNet has no nn.Linear to take the class count from: pass num_classes="):
        convert(torchvision.models.squeezenet1_1(weights=None), layer="features.12")

    class Untraceable(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            f = self.conv(x)
            return self.fc((f if f.sum() > 0 else -f).mean((2, 3)))

    with pytest.raises(ValueError, match="Untraceable cannot be traced by torch.fx"):
        convert(Untraceable(), layer="conv")
