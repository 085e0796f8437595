"""Grad-CAM over one small model of many timm families: the last stage's grid, or one clear line; never a crash."""

import pytest
import torch

import camloc

timm = pytest.importorskip("timm")

# (model, options for a small variant, input side, the grid of its last stage at that input).
# The grids are the input over the last stage's stride (the stride of a stage with odd sizes rounds
# as the model does: LeViT 224 / 56, CSATv2 224 / 64 floored).
SMALL = [
    ("convnext_atto", {}, 64, (2, 2)),  # Grad-CAM used to take the (N, C) pooled tensor: IndexError
    ("convnextv2_atto", {}, 64, (2, 2)),
    ("inception_next_atto", {}, 64, (2, 2)),
    ("poolformer_s12", {}, 64, (2, 2)),
    ("rdnet_tiny", {}, 64, (2, 2)),
    ("efficientnet_b0", {}, 64, (2, 2)),  # conv_head + bn2 after feature_info's last stage
    ("efficientvit_b0", {}, 64, (2, 2)),  # TraceError: control flow
    ("mobilevit_xxs", {}, 64, (2, 2)),
    ("pvt_v2_b0", {}, 64, (2, 2)),  # used to give (N, 1, 56, 32)
    ("repvit_m1", {}, 64, (2, 2)),  # used to give an early stage
    ("focalnet_tiny_srf", {}, 64, (2, 2)),
    ("nest_tiny", {"img_size": 64}, 64, (4, 4)),  # three levels: stride 16
    ("maxvit_tiny_tf_224", {"img_size": 64, "depths": (1, 1, 1, 1), "embed_dim": (32, 32, 32, 32)}, 64, (2, 2)),
    ("hiera_tiny_224", {"img_size": (64, 64), "embed_dim": 24, "num_heads": 1, "stages": (1, 1, 1, 1)}, 64, (2, 2)),
    ("hieradet_small", {"embed_dim": 24, "num_heads": 1, "stages": (1, 1, 1, 1)}, 64, (2, 2)),  # channels last
    (
        "swin_tiny_patch4_window7_224",
        {"embed_dim": 24, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1), "img_size": 64, "window_size": 2},
        64,
        (2, 2),
    ),
    ("vit_tiny_patch16_224", {"depth": 1, "embed_dim": 48, "num_heads": 2, "img_size": 64}, 64, (4, 4)),
    ("deit_tiny_distilled_patch16_224", {"depth": 1, "embed_dim": 48, "num_heads": 2, "img_size": 64}, 64, (4, 4)),
    ("test_vit", {}, 64, (4, 4)),
    (  # feature_info names no module: its final norm, tokens on the grid
        "twins_svt_small",
        {"embed_dims": (8, 16, 16, 32), "num_heads": (1, 1, 1, 1), "depths": (1, 1, 1, 1), "wss": (1, 1, 1, 1)},
        64,
        (2, 2),
    ),
]

# Full-size small variants at their own input size.
FULL = [
    ("tiny_vit_5m_224", {}, 224, (7, 7)),  # TraceError
    ("maxvit_tiny_tf_224", {}, 224, (7, 7)),  # TraceError
    ("mobilevit_xs", {}, 256, (8, 8)),  # TraceError
    ("hiera_tiny_224", {}, 224, (7, 7)),  # 'len' is not supported in symbolic tracing
    ("swin_tiny_patch4_window7_224", {}, 224, (7, 7)),  # used to give (N, 1, 56, 96)
    ("efficientformer_l1", {}, 224, (7, 7)),  # tokens (N, 49, C)
    ("levit_128s", {}, 224, (4, 4)),
    ("coatnet_nano_rw_224", {}, 224, (7, 7)),
    ("crossvit_tiny_240", {}, 240, (14, 14)),  # the 16-pixel branch sees the input at 224
    ("deit_tiny_patch16_224", {}, 224, (14, 14)),
    ("cait_xxs24_224", {}, 224, (14, 14)),  # class attention after the last block
    ("xcit_nano_12_p16_224", {}, 224, (14, 14)),
    ("pit_ti_224", {}, 224, (7, 7)),
    ("tnt_s_patch16_224", {}, 224, (14, 14)),
    ("volo_d1_224", {}, 224, (14, 14)),  # channels last, then class attention
    ("sequencer2d_s", {}, 224, (16, 16)),
    ("convmixer_768_32", {}, 224, (32, 32)),
    ("csatv2", {}, 224, (3, 3)),
    ("ghostnet_050", {}, 224, (7, 7)),
    ("hrnet_w18_small", {}, 224, (7, 7)),
    ("mvitv2_tiny", {}, 224, (7, 7)),
]

# Families refused in one line: what Grad-CAM of their last stage would need is not there.
REFUSED = [
    ("coat_tiny", "reads only its class token after 'parallel_blocks.5'"),  # no attention norm to explain
    ("efficientvim_m1", "the scores do not depend on the output of target_layer='stages.2'"),  # heads on every stage
]


def _check(name, options, size, grid):
    model = timm.create_model(name, pretrained=False, num_classes=5, **options).eval()
    method = camloc.GradCAM(model)
    x = torch.randn(2, 3, size, size)
    out = method(x, topk=2, upsample=False)
    assert tuple(out.raw.shape) == (2, 2, *grid)
    last = model.feature_info[-1]
    assert all(abs(side - size / last["reduction"]) < 1 for side in grid)  # the last stage, as timm declares it
    assert out.features.shape == (2, method.layout.channels, *grid)
    assert torch.isfinite(out.raw).all()
    if method.target_layer == last["module"]:
        # the layer's output read from its own layout (NCHW, NHWC, tokens) is timm's own NCHW reading of it
        with torch.no_grad():
            _, (theirs,) = model.forward_intermediates(x, indices=[len(model.feature_info) - 1], norm=False)
        scale = theirs.abs().max().item()
        torch.testing.assert_close(out.features, theirs, rtol=1e-4, atol=1e-5 * scale)
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("name, options, size, grid", SMALL, ids=[c[0] for c in SMALL])
def test_small_models_of_each_family_get_maps_on_their_last_stage(name, options, size, grid):
    _check(name, options, size, grid)


@pytest.mark.slow
@pytest.mark.parametrize("name, options, size, grid", FULL, ids=[c[0] for c in FULL])
def test_full_models_of_each_family_get_maps_on_their_last_stage(name, options, size, grid):
    _check(name, options, size, grid)


@pytest.mark.parametrize("name, message", REFUSED, ids=[c[0] for c in REFUSED])
def test_families_without_a_map_to_explain_are_refused_in_one_line(name, message):
    model = timm.create_model(name, pretrained=False, num_classes=5).eval()
    with pytest.raises(camloc.CamlocError) as caught:
        camloc.GradCAM(model)(torch.randn(1, 3, 224, 224))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_named_layer_of_an_untraceable_model_runs_through_a_hook():
    model = timm.create_model("efficientvit_b0", pretrained=False, num_classes=5).eval()
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(model)  # control flow on tensors
    out = camloc.GradCAM(model, "stages.2")(torch.randn(2, 3, 64, 64), topk=1, upsample=False)
    assert out.raw.shape == (2, 1, 4, 4) and out.features.shape == (2, 64, 4, 4)  # stride 16, 64 channels
    assert not any(m._forward_hooks for m in model.modules())
