"""Channels-last feature maps (timm's ``output_fmt = "NHWC"``): CAM on their grid, or a refusal, never a wrong map."""

import pytest
import torch
from torch import nn

import camloc
from camloc.errors import HeadNotFound


class ChannelsLastNet(nn.Module):
    """timm's contract with a channels-last map: forward_features -> (N, H, W, C), forward_head pools (1, 2)."""

    def __init__(self, declare: bool) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 4, stride=4)
        self.fc = nn.Linear(6, 5)
        self.num_features = 6
        if declare:
            self.output_fmt = "NHWC"

    def forward_features(self, x):
        return self.stem(x).permute(0, 2, 3, 1)

    def forward_head(self, x):
        return self.fc(x.mean((1, 2)))

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _exact(model: nn.Module, x: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    out = camloc.CAM(model)(x, topk=topk, upsample=False)
    logits = model(x).detach()
    fc = model.get_classifier()
    return out.raw, out.raw.mean((2, 3)) + fc.bias.detach()[out.classes] - logits.gather(1, out.classes)


def test_a_declared_channels_last_map_gives_the_cam_of_each_position():
    torch.manual_seed(0)
    model = ChannelsLastNet(declare=True).eval()
    x = torch.randn(2, 3, 32, 48)
    raw, gap = _exact(model, x, topk=3)
    assert tuple(raw.shape) == (2, 3, 8, 12)
    assert gap.abs().max() < 1e-5  # the map's mean plus the bias is the logit (Zhou et al.'s identity)
    # by hand: M_c(y, x) = sum_k w_k^c f_k(y, x) on the channels-last map
    with torch.no_grad():
        f = model.forward_features(x)  # (N, H, W, C)
        classes = camloc.CAM(model)(x, topk=3, upsample=False).classes
        expected = torch.einsum("nhwk,njk->njhw", f, model.fc.weight[classes])
    torch.testing.assert_close(raw, expected)


def test_an_undeclared_channels_last_map_is_refused_not_misread():
    model = ChannelsLastNet(declare=False).eval()
    with pytest.raises(HeadNotFound, match=r"shape \(1, 8, 8, 6\), but its head takes 6 channels"):
        camloc.CAM(model)(torch.randn(1, 3, 32, 32))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, options",
    [
        ("swin_tiny_patch4_window7_224", {"embed_dim": 24, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)}),
        ("hieradet_small", {"embed_dim": 24, "num_heads": 1, "stages": (1, 1, 1, 1)}),
    ],
)
def test_timm_channels_last_models_get_maps_on_their_grid(name, options):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, **options).eval()
    raw, gap = _exact(model, torch.randn(2, 3, 224, 224), topk=2)
    assert tuple(raw.shape) == (2, 2, 7, 7)  # 224 / 32: the last stage's grid, not (7, C)
    assert gap.abs().max() < 1e-4  # pooling then a linear layer: CAM is exact


def _vit(**options):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    defaults = {"global_pool": "avg", "fc_norm": False, "depth": 1, "embed_dim": 48, "num_heads": 2}
    name = options.pop("name", "vit_tiny_patch16_224")
    return timm.create_model(name, pretrained=False, num_classes=7, **{**defaults, **options}).eval()


@pytest.mark.parametrize(
    "options, size, grid",
    [
        ({"img_size": 64}, (64, 64), (4, 4)),  # one class token
        ({"img_size": (48, 80)}, (48, 80), (3, 5)),  # not square: rows follow the height
        ({"name": "vit_small_patch14_reg4_dinov2", "img_size": (56, 42)}, (56, 42), (4, 3)),  # class + 4 registers
        ({"dynamic_img_size": True}, (32, 96), (2, 6)),
    ],
)
def test_vit_averaging_patch_tokens_gets_cam_on_the_patch_grid(options, size, grid):
    model = _vit(**options)
    x = torch.randn(2, 3, *size)
    raw, gap = _exact(model, x, topk=2)
    assert tuple(raw.shape) == (2, 2, *grid)
    assert gap.abs().max() < 1e-5  # pooled patch tokens then one linear layer: CAM is exact
    with torch.no_grad():  # by hand: patch token (i, j) is token prefix + i * width + j
        tokens = model.forward_features(x)[:, model.num_prefix_tokens :]
        classes = camloc.CAM(model)(x, topk=2, upsample=False).classes
        cam = torch.einsum("ntk,njk->njt", tokens, model.head.weight[classes])
    torch.testing.assert_close(raw, cam.reshape(2, 2, *grid))


def test_vit_with_a_layernorm_after_pooling_is_linearized_at_the_image():
    model = _vit(fc_norm=True, img_size=64)
    x = torch.randn(1, 3, 64, 64)
    out = camloc.CAM(model)(x, topk=1, upsample=False)
    with torch.enable_grad():  # the gradient of the logit with respect to the pooled patch tokens
        pooled = model.forward_features(x)[:, model.num_prefix_tokens :].mean(1).detach().requires_grad_(True)
        model.head(model.fc_norm(pooled))[0, out.classes[0, 0]].backward()
    with torch.no_grad():
        tokens = model.forward_features(x)[:, model.num_prefix_tokens :]
        expected = (tokens[0] @ pooled.grad[0]).reshape(4, 4)
    torch.testing.assert_close(out.raw[0, 0], expected)


def test_vit_reading_its_class_token_is_refused():
    model = _vit(global_pool="token", img_size=64)
    with pytest.raises(HeadNotFound, match=r"the pooled tensor has shape \(1, 17, 48\)"):
        camloc.CAM(model)(torch.randn(1, 3, 64, 64))


def test_timm_model_averaging_all_its_tokens_gives_exact_cam_and_grad_cam_on_the_token_grid():
    """Twins pools every token (no class token): CAM on the 2 x 3 grid is exact, Grad-CAM there is CAM / (h w)."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(
        "twins_svt_small",
        pretrained=False,
        num_classes=5,
        embed_dims=(8, 16, 16, 32),
        num_heads=(1, 1, 1, 1),
        depths=(1, 1, 1, 1),
        sr_ratios=(2, 1, 1, 1),
        wss=(1, 1, 1, 1),
    ).eval()
    x = torch.randn(2, 3, 64, 96)
    out = camloc.CAM(model, relu=False)(x, topk=2, upsample=False)
    logits = model(x).detach()
    assert out.raw.shape == (2, 2, 2, 3)
    head_bias = model.head.bias.detach()[out.classes]
    torch.testing.assert_close(out.raw.mean((2, 3)) + head_bias, logits.gather(1, out.classes), rtol=1e-4, atol=1e-5)
    grad = camloc.GradCAM(model, relu=False)(x, classes=out.classes, upsample=False)
    assert grad.raw.shape == (2, 2, 2, 3)
    torch.testing.assert_close(grad.raw, out.raw / 6, rtol=1e-4, atol=1e-6)


def test_timm_model_whose_features_are_several_tensors_is_refused_for_cam_and_explained_by_grad_cam():
    timm = pytest.importorskip("timm")
    model = timm.create_model("crossvit_tiny_240", pretrained=False, num_classes=3, depth=((1, 1, 0),) * 1).eval()
    x = torch.randn(1, 3, 240, 240)
    with pytest.raises(HeadNotFound, match="forward_features gives a list of tensors"):
        camloc.CAM(model)(x)
    # feature_info's last entry is the 16-pixel branch, which sees the input resized to 224: a 14 x 14 grid
    assert camloc.GradCAM(model)(x, upsample=False).raw.shape[-2:] == (14, 14)


def test_hiera_cam_lies_on_the_grid_timm_itself_rerolls_its_last_stage_to():
    """Hiera averages its (unrolled) tokens; at the last stage they are row-major: the map is timm's own grid."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(
        "hiera_tiny_224", pretrained=False, img_size=(64, 64), embed_dim=24, num_heads=1, stages=(1, 1, 1, 1)
    ).eval()
    x = torch.randn(2, 3, 64, 64)
    out = camloc.CAM(model)(x, upsample=False)
    (grid,) = model.forward_intermediates(x, indices=1, intermediates_only=True)
    assert out.features.shape == grid.shape == (2, 192, 2, 2)
    torch.testing.assert_close(out.features, grid)


@pytest.mark.slow
def test_mvitv2_without_a_patch_size_gives_exact_cam_on_its_last_stage():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("mvitv2_tiny", pretrained=False, num_classes=4).eval()
    torch.nn.init.normal_(model.head.fc.weight)  # timm starts this head at zero: every CAM would be 0
    x = torch.randn(2, 3, 224, 224)
    raw, error = _exact(model, x, topk=2)
    assert raw.shape == (2, 2, 7, 7)
    assert error.abs().max() < 1e-4 * raw.abs().max()
