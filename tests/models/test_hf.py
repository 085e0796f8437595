"""Hugging Face ``transformers`` image classifiers as they come: CAM on their grid, exact where the head is linear,
refused in one line where the classifier reads a class token; logits, id2label, the processor's preprocessing,
``hf:PATH``. Every model is built from a tiny config with random weights (no download)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import camloc
from camloc.errors import HeadNotFound, InvalidArgument, WeightsNotFound
from camloc.models import hf, hf_info

T = pytest.importorskip("transformers")

LABELS = {0: "cat", 1: "dog", 2: "fox", 3: "owl", 4: "elk"}
VIT = dict(image_size=64, patch_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
LEVIT = dict(
    image_size=64,
    hidden_sizes=[16, 32],
    num_attention_heads=[1, 2],
    depths=[1, 1],
    key_dim=[8, 8],
    mlp_ratio=[2, 2],
    attention_ratio=[2, 2],
    down_ops=[["Subsample", 8, 1, 2, 2, 2]],
)
PVT = dict(image_size=64, hidden_sizes=[8, 16], depths=[1, 1], num_encoder_blocks=2, num_attention_heads=[1, 1])
SWIN = dict(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4)
HGNET = dict(
    hidden_sizes=[16, 16, 16, 32],
    stem_channels=[3, 8, 8],
    stage_in_channels=[8, 16, 16, 16],
    stage_mid_channels=[8, 8, 8, 8],
    stage_out_channels=[16, 16, 16, 32],
    stage_num_blocks=[1, 1, 1, 1],
    stage_numb_of_layers=[1, 1, 1, 1],
)
FOCAL = dict(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1])
POOLFORMER = dict(
    num_encoder_blocks=2, depths=[1, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3], strides=[4, 2], padding=[2, 1]
)


def _configs():
    """name -> (config, class): one tiny model of each architecture."""
    small_cnn = dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])
    return {
        "resnet": (T.ResNetConfig(**small_cnn), T.ResNetForImageClassification),
        "regnet": (T.RegNetConfig(**small_cnn, groups_width=8), T.RegNetForImageClassification),
        "bit": (T.BitConfig(**small_cnn, num_groups=2), T.BitForImageClassification),
        "efficientnet": (
            T.EfficientNetConfig(image_size=64, width_coefficient=0.1, depth_coefficient=0.1, hidden_dim=128),
            T.EfficientNetForImageClassification,
        ),
        "mobilevit": (
            T.MobileViTConfig(
                image_size=64, hidden_sizes=[16] * 3, neck_hidden_sizes=[8] * 6 + [16], num_attention_heads=2
            ),
            T.MobileViTForImageClassification,
        ),
        "mobilevitv2": (T.MobileViTV2Config(image_size=64, width_multiplier=0.25), T.MobileViTV2ForImageClassification),
        "mobilenet_v1": (
            T.MobileNetV1Config(image_size=64, depth_multiplier=0.25),
            T.MobileNetV1ForImageClassification,
        ),
        "mobilenet_v2": (
            T.MobileNetV2Config(image_size=64, depth_multiplier=0.25),
            T.MobileNetV2ForImageClassification,
        ),
        "focalnet": (
            T.FocalNetConfig(**FOCAL, focal_levels=[2, 2], focal_windows=[3, 3]),
            T.FocalNetForImageClassification,
        ),
        "poolformer": (
            T.PoolFormerConfig(**POOLFORMER),
            T.PoolFormerForImageClassification,
        ),
        "segformer": (
            T.SegformerConfig(**PVT, sr_ratios=[2, 1], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2]),
            T.SegformerForImageClassification,
        ),
        "swiftformer": (
            T.SwiftFormerConfig(image_size=64, depths=[1, 1, 1, 1], embed_dims=[8, 8, 16, 16]),
            T.SwiftFormerForImageClassification,
        ),
        "hgnet_v2": (T.HGNetV2Config(**HGNET), T.HGNetV2ForImageClassification),
        "ijepa": (T.IJepaConfig(**VIT, intermediate_size=32), T.IJepaForImageClassification),
        "clip": (T.CLIPConfig(vision_config=VIT | {"intermediate_size": 32}), T.CLIPForImageClassification),
        "siglip": (T.SiglipConfig(vision_config=VIT | {"intermediate_size": 32}), T.SiglipForImageClassification),
        "convnext": (
            T.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1]),
            T.ConvNextForImageClassification,
        ),
        "convnextv2": (
            T.ConvNextV2Config(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1]),
            T.ConvNextV2ForImageClassification,
        ),
        "swin": (T.SwinConfig(**SWIN), T.SwinForImageClassification),
        "swinv2": (T.Swinv2Config(**SWIN), T.Swinv2ForImageClassification),
        "pvt_v2": (
            T.PvtV2Config(**PVT, sr_ratios=[2, 1], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2]),
            T.PvtV2ForImageClassification,
        ),
        "levit": (T.LevitConfig(**LEVIT), T.LevitForImageClassification),
        "levit-teacher": (T.LevitConfig(**LEVIT), T.LevitForImageClassificationWithTeacher),
        "beit": (T.BeitConfig(**VIT, intermediate_size=32, use_mean_pooling=True), T.BeitForImageClassification),
        "data2vec": (
            T.Data2VecVisionConfig(**VIT, intermediate_size=32, use_mean_pooling=True),
            T.Data2VecVisionForImageClassification,
        ),
        "dinov2": (T.Dinov2Config(**VIT, mlp_ratio=2), T.Dinov2ForImageClassification),
        "dinov2-registers": (
            T.Dinov2WithRegistersConfig(**VIT, mlp_ratio=2, num_register_tokens=2),
            T.Dinov2WithRegistersForImageClassification,
        ),
        "vit": (T.ViTConfig(**VIT, intermediate_size=32), T.ViTForImageClassification),
        "deit": (T.DeiTConfig(**VIT, intermediate_size=32), T.DeiTForImageClassification),
        "deit-teacher": (T.DeiTConfig(**VIT, intermediate_size=32), T.DeiTForImageClassificationWithTeacher),
        "beit-cls": (T.BeitConfig(**VIT, intermediate_size=32, use_mean_pooling=False), T.BeitForImageClassification),
        "pvt": (
            T.PvtConfig(**PVT, sequence_reduction_ratios=[2, 1], patch_sizes=[4, 2], strides=[4, 2], mlp_ratios=[2, 2]),
            T.PvtForImageClassification,
        ),
    }


def build(name: str) -> torch.nn.Module:
    config, cls = _configs()[name]
    config.num_labels = len(LABELS)
    config.id2label, config.label2id = dict(LABELS), {v: k for k, v in LABELS.items()}
    torch.manual_seed(0)
    model = cls(config).eval()
    with torch.no_grad():  # random BatchNorm statistics, so that folding them is tested
        if name.startswith("levit"):  # its initialization (std 0.02, no normalization between) flattens a tiny LeViT
            for p in model.parameters():
                if p.ndim > 1:
                    torch.nn.init.normal_(p, std=p[0].numel() ** -0.5)
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


# name -> (grid of a 64 x 64 input, grid of 64 x 96 or None where the model takes square inputs only)
LINEAR = {
    "resnet": ((8, 8), (8, 12)),
    "regnet": ((8, 8), (8, 12)),
    "bit": ((8, 8), (8, 12)),
    "efficientnet": ((2, 2), (2, 3)),
    "mobilevit": ((2, 2), (2, 3)),
    "mobilevitv2": ((2, 2), (2, 3)),
    "swin": ((8, 8), (8, 12)),
    "swinv2": ((8, 8), (8, 12)),
    "pvt_v2": ((8, 8), (8, 12)),
    "mobilenet_v1": ((2, 2), (2, 3)),
    "mobilenet_v2": ((2, 2), (2, 3)),
    "focalnet": ((8, 8), (8, 12)),
    "poolformer": ((8, 8), (8, 12)),
    "segformer": ((8, 8), (8, 12)),
    "hgnet_v2": ((2, 2), (2, 3)),
    "ijepa": ((4, 4), (4, 6)),
    "clip": ((4, 4), (4, 6)),
    "siglip": ((4, 4), (4, 6)),
}
AFFINE = {"levit": ((2, 2), None), "levit-teacher": ((2, 2), None), "swiftformer": ((2, 2), (2, 3))}
LINEARIZED = {"convnext": ((8, 8), (8, 12)), "convnextv2": ((8, 8), (8, 12)), "beit": ((4, 4), None)}
LINEARIZED |= {"data2vec": ((4, 4), None)}
PATCH_HALF = {"dinov2": ((4, 4), (4, 6)), "dinov2-registers": ((4, 4), (4, 6))}
CAM_MODELS = LINEAR | AFFINE | LINEARIZED | PATCH_HALF
# name -> (prefix tokens, grid of a 64 x 64 input) of the models whose classifier reads a class token
CLASS_TOKEN = {"vit": (1, (4, 4)), "deit": (2, (4, 4)), "deit-teacher": (2, (4, 4)), "beit-cls": (1, (4, 4))}
CLASS_TOKEN |= {"pvt": (1, (8, 8))}


@pytest.fixture(scope="module")
def models():
    return {name: build(name) for name in _configs()}


def _inputs(size=(64, 64)):
    return torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", sorted(CAM_MODELS))
def test_cam_of_the_model_as_it_comes_lies_on_its_grid(models, name):
    model = models[name]
    square, wide = CAM_MODELS[name]
    for size, grid in (((64, 64), square), ((64, 96), wide)):
        if grid is None:
            continue
        x = _inputs(size)
        out = camloc.CAM(model)(x, topk=3)
        assert out.raw.shape == (2, 3, *grid) and out.maps.shape == (2, 3, *size)
        with torch.no_grad():  # other sizes than the config's: with position embeddings interpolated (tested below)
            expected = model(x).logits if size == (64, 64) else hf.as_classifier(model)(x)
        torch.testing.assert_close(out.logits, expected)
        assert out.raw.flatten(2).std(dim=2).min() > 0  # a map, not a constant
        assert all(not m._forward_hooks for m in model.modules())  # nothing left behind


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_cam_is_exact_where_the_head_is_linear_after_pooling(models, name):
    model = models[name]
    cam = camloc.CAM(model)
    x = _inputs()
    out = cam(x, topk=5, upsample=False)
    assert cam.adapter.is_linear
    bias = cam.adapter.classifier.bias.detach()
    torch.testing.assert_close(out.raw.mean((2, 3)) + bias[out.classes], out.logits.gather(1, out.classes))


@pytest.mark.parametrize("name", sorted(AFFINE))
def test_cam_is_exact_through_affine_heads(models, name):
    """LeViT's BatchNorm1d + linear, SwiftFormer's two averaged heads: affine in eval mode, so the map's mean plus
    the head's value at zero features is the logit."""
    model = models[name]
    cam = camloc.CAM(model)
    out = cam(_inputs(), topk=5, upsample=False)
    if name == "swiftformer":
        heads, width = [model.head, model.dist_head], 16
    else:
        heads, width = [model.classifier] + ([model.classifier_distill] if "teacher" in name else []), 32
    with torch.no_grad():
        at_zero = torch.stack([h(torch.zeros(1, width)) for h in heads]).mean(0)[0]
    torch.testing.assert_close(out.raw.mean((2, 3)) + at_zero[out.classes], out.logits.gather(1, out.classes))


def _tokens_on_grid(tokens, prefix, grid):
    n, _, c = tokens.shape
    return tokens[:, prefix:].transpose(1, 2).reshape(n, c, *grid)


@pytest.mark.parametrize("name", sorted(LINEARIZED))
def test_cam_through_a_norm_after_pooling_is_the_head_linearized_at_the_image(models, name):
    """Reference: the base model's own output, pooled by hand, the head's Jacobian at that point (torch.func)."""
    model = models[name]
    base = model.base_model
    x = _inputs()
    with torch.no_grad():
        hidden = base(x).last_hidden_state
    if hidden.ndim == 3:  # BEiT / Data2Vec: class token, then the patches
        features = _tokens_on_grid(hidden, 1, (4, 4))
        norm = base.pooler.layernorm
    else:
        features, norm = hidden, base.layernorm
    pooled = features.mean((2, 3))
    jacobians = torch.stack([torch.func.jacrev(lambda p: model.classifier(norm(p)))(p) for p in pooled])  # (N, k, C)
    expected = torch.einsum("nkc,nchw->nkhw", jacobians, features)
    out = camloc.CAM(model)(x, classes=[[0, 1, 2, 3, 4]] * 2, upsample=False)
    torch.testing.assert_close(out.raw, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(PATCH_HALF))
def test_dinov2_cam_is_the_patch_half_of_its_head(models, name):
    """logit = mean(map) + bias + w_cls . class token: the map is the patch-mean half of the linear classifier."""
    model = models[name]
    x = _inputs()
    out = camloc.CAM(model)(x, topk=5, upsample=False)
    with torch.no_grad():
        cls_token = model.base_model(x).last_hidden_state[:, 0]
    w, b = model.classifier.weight.detach(), model.classifier.bias.detach()
    class_term = (cls_token @ w[:, :16].T).gather(1, out.classes)
    torch.testing.assert_close(out.raw.mean((2, 3)) + b[out.classes] + class_term, out.logits.gather(1, out.classes))


def test_swin_cam_equals_the_classifier_rows_on_the_final_tokens(models):
    """An independent reading: SwinModel's last_hidden_state (after the per-token norm) laid out row-major."""
    model = models["swin"]
    x = _inputs((64, 96))
    with torch.no_grad():
        features = _tokens_on_grid(model.swin(x).last_hidden_state, 0, (8, 12))
    expected = torch.einsum("kc,nchw->nkhw", model.classifier.weight.detach(), features)
    out = camloc.CAM(model)(x, classes=[[0, 1, 2, 3, 4]] * 2, upsample=False)
    torch.testing.assert_close(out.raw, expected)


@pytest.mark.parametrize("name", sorted(CLASS_TOKEN) + ["efficientnet-max"])
def test_cam_is_refused_in_one_line_where_the_classifier_does_not_average_the_map(models, name):
    if name == "efficientnet-max":
        config, cls = _configs()["efficientnet"]
        config.pooling_type = "max"
        model, why = cls(config).eval(), "pools with 'max'"
    else:
        model, why = models[name], "reads the class token"
    with pytest.raises(HeadNotFound) as err:
        camloc.CAM(model)
    message = str(err.value)
    assert "\n" not in message and why in message and type(model).__name__ in message
    assert "gradcam" in message


@pytest.mark.parametrize("name", sorted(CAM_MODELS) + sorted(CLASS_TOKEN))
def test_the_declared_feature_layer_is_called_in_forward_and_reads_to_the_grid(models, name):
    """The Grad-CAM family's default target layer: a module of the model, a tensor that its layout lays on the grid."""
    model = models[name]
    view = hf.as_classifier(model)
    layer, layout = view.camloc_feature_layer()
    assert (layer, layout) == hf.feature_layer(model)
    module = model.get_submodule(layer)  # the name is relative to the transformers model itself
    assert view.get_submodule(layer) is module
    seen = []
    handle = module.register_forward_hook(lambda _m, _a, out: seen.append(out))
    try:
        with torch.no_grad():
            view(_inputs())
    finally:
        handle.remove()
    assert len(seen) >= 1 and isinstance(seen[-1], torch.Tensor)
    grid = layout.to_grid(seen[-1], (64, 64))
    expected = CLASS_TOKEN[name][1] if name in CLASS_TOKEN else CAM_MODELS[name][0]
    assert grid.shape[0] == 2 and tuple(grid.shape[2:]) == expected
    if name in CLASS_TOKEN:
        assert layout.prefix == CLASS_TOKEN[name][0]
        assert seen[-1].shape[1] == CLASS_TOKEN[name][0] + expected[0] * expected[1]
    else:  # the map CAM explains
        torch.testing.assert_close(grid, camloc.CAM(model)(_inputs(), upsample=False).features)


@pytest.mark.parametrize("name", sorted(CLASS_TOKEN))
def test_class_token_models_feature_layer_passes_gradient_to_every_patch(models, name):
    """After the final norm only the class token reaches the logits; at the last block's input all patches do."""
    model = models[name]
    layer, layout = hf.feature_layer(model)
    kept = []

    def keep(_m, _a, out):
        out.retain_grad()
        kept.append(out)

    handle = model.get_submodule(layer).register_forward_hook(keep)
    try:
        model(_inputs()).logits[:, 0].sum().backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    grads = layout.to_grid(kept[0].grad, (64, 64))
    assert (grads.abs().sum(dim=1) > 0).all()  # every patch of every image


def test_the_view_is_the_same_model_returning_logits(models):
    model = models["resnet"]
    view = hf.as_classifier(model)
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(view(x), model(x).logits)
    assert isinstance(view, type(model)) and type(view).__name__ == type(model).__name__
    assert [(n, p.data_ptr()) for n, p in view.named_parameters()] == [
        (n, p.data_ptr()) for n, p in model.named_parameters()
    ]
    assert hf.as_classifier(view) is view and hf.as_classifier(torch.nn.Linear(2, 2)).__class__ is torch.nn.Linear
    view.train()
    assert model.training and model.resnet.training
    model.eval()
    assert not view.training
    assert not hasattr(model, "camloc_feature_layer")  # the user's model is not changed


def test_unknown_architectures_are_refused_naming_the_model_type():
    config = T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])
    model = T.ResNetForImageClassification(config).eval()
    model.config.model_type = "my-net"
    with pytest.raises(HeadNotFound, match="'my-net' models keep their last feature map") as err:
        camloc.CAM(model)
    assert "\n" not in str(err.value)


def test_model_info_reads_id2label_and_ignores_generic_label_names(models):
    info = camloc.model_info(models["swin"])
    assert info.class_names == tuple(LABELS.values()) and info.class_name(3) == "owl"
    assert info.preprocess.size == 64  # config.image_size, when no processor was saved beside the model
    plain = T.ResNetForImageClassification(T.ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1], num_labels=3))
    assert camloc.model_info(plain).class_names is None  # LABEL_0, LABEL_1, ...


# ------------------------------------------------------------------------------------- preprocessing


def _photo(size=(80, 80)):
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("processor", "size", "mode"),
    [
        ("ViTImageProcessorPil", {"size": {"height": 48, "width": 48}}, "squash"),
        ("ConvNextImageProcessorPil", {"size": {"shortest_edge": 48}, "crop_pct": 0.875}, "crop"),
    ],
)
def test_the_processors_settings_give_its_pixel_values(tmp_path, processor, size, mode):
    """camloc's Preprocess read from a saved processor gives the processor's own pixel values."""
    made = getattr(T, processor)(**size, image_mean=[0.4, 0.5, 0.6], image_std=[0.2, 0.3, 0.25], resample=2)
    made.save_pretrained(tmp_path)
    settings = json.loads((tmp_path / "preprocessor_config.json").read_text())
    pre = hf_info.processor_preprocess(settings)
    assert (pre.size, pre.mode, pre.mean, pre.std) == (48, mode, (0.4, 0.5, 0.6), (0.2, 0.3, 0.25))
    photo = _photo()
    theirs = torch.as_tensor(np.asarray(made(photo, return_tensors="np")["pixel_values"][0]))
    ours, _ = pre(photo)
    torch.testing.assert_close(ours, theirs.float(), atol=1e-5, rtol=1e-5)


def test_processor_rules_of_levit_bit_and_unnormalized_processors():
    levit = hf_info.processor_preprocess(
        {"image_processor_type": "LevitImageProcessor", "size": {"shortest_edge": 224}, "do_center_crop": True}
        | {"crop_size": {"height": 224, "width": 224}}
    )
    assert (levit.size, levit.resize_size, levit.mode) == (224, 256, "crop")
    bit = hf_info.processor_preprocess(
        {"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 256}, "do_center_crop": True}
        | {"crop_size": {"height": 224, "width": 224}, "resample": 3}
    )
    assert (bit.size, bit.resize_size, bit.mode, bit.interpolation) == (224, 256, "crop", "bicubic")
    raw = hf_info.processor_preprocess({"size": {"height": 32, "width": 32}, "do_normalize": False})
    assert (raw.mean, raw.std, raw.mode) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "squash")
    big = hf_info.processor_preprocess(
        {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 384}}
    )
    assert (big.size, big.mode) == (384, "squash")  # ConvNeXt warps inputs of 384 and more, without a crop


# ------------------------------------------------------------------------------------------ hf:PATH


def save_model(folder, name="resnet", processor=True):
    model = build(name)
    model.save_pretrained(folder)
    if processor:
        T.ViTImageProcessorPil(
            size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.25] * 3
        ).save_pretrained(folder)
    return model


def test_load_model_reads_a_save_pretrained_folder_with_its_names_and_preprocessing(tmp_path):
    original = save_model(tmp_path / "m")
    model = camloc.load_model(f"hf:{tmp_path / 'm'}")
    info = camloc.model_info(model)
    assert info.name == f"hf:{tmp_path / 'm'}" and info.class_names == tuple(LABELS.values())
    assert (info.preprocess.size, info.preprocess.mode, info.preprocess.mean) == (64, "squash", (0.5, 0.5, 0.5))
    assert not model.training
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x).logits)  # forward gives the logits
    out = camloc.CAM(model)(x, topk=2)
    assert out.raw.shape == (2, 2, 8, 8)


def test_a_model_given_as_it_comes_finds_the_processor_saved_beside_it(tmp_path):
    save_model(tmp_path / "m")
    model = T.AutoModelForImageClassification.from_pretrained(tmp_path / "m", local_files_only=True)
    info = camloc.model_info(model)
    assert info.class_names == tuple(LABELS.values()) and info.preprocess.std == (0.25, 0.25, 0.25)


def test_hf_path_errors_name_the_folder_in_one_line(tmp_path):
    with pytest.raises(WeightsNotFound, match=f"hf:{tmp_path / 'nowhere'}: no such folder"):
        camloc.load_model(f"hf:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFound, match="no config.json in"):
        camloc.load_model(f"hf:{tmp_path / 'empty'}")
    save_model(tmp_path / "m", processor=False)
    with pytest.raises(InvalidArgument, match="holds its own weights"):
        camloc.load_model(f"hf:{tmp_path / 'm'}", weights=tmp_path / "w.pt")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(camloc.CamlocError) as err:
        camloc.load_model(f"hf:{tmp_path / 'm'}")
    assert "\n" not in str(err.value) and str(tmp_path / "m") in str(err.value)


def test_hf_path_flips_channels_where_mobilevits_processor_does(tmp_path, caplog):
    """MobileViT's processor feeds BGR: the hf: model flips its input; the model given as it comes gets a warning."""
    original = build("mobilevit")
    original.save_pretrained(tmp_path / "m")
    processor = T.MobileViTImageProcessorPil(size={"shortest_edge": 72}, crop_size={"height": 64, "width": 64})
    processor.save_pretrained(tmp_path / "m")
    model = camloc.load_model(f"hf:{tmp_path / 'm'}")
    pre = camloc.model_info(model).preprocess
    assert (pre.size, pre.resize_size, pre.mode, pre.mean, pre.std) == (64, 72, "crop", (0.0,) * 3, (1.0,) * 3)
    theirs = torch.as_tensor(np.asarray(processor(_photo(), return_tensors="np")["pixel_values"][0]))
    torch.testing.assert_close(pre(_photo())[0].flip(0), theirs.float(), atol=1e-5, rtol=1e-5)  # BGR, once flipped
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x.flip(1)).logits)
        torch.testing.assert_close(camloc.CAM(model)(x).logits, original(x.flip(1)).logits)
    assert not caplog.records
    as_it_comes = T.AutoModelForImageClassification.from_pretrained(tmp_path / "m", local_files_only=True)
    camloc.model_info(as_it_comes)
    assert "flips RGB to BGR, which camloc does not" in caplog.text


@pytest.mark.parametrize(("size", "grid"), [((64, 96), (4, 6)), ((70, 90), (4, 5))])
def test_vits_run_at_other_sizes_with_their_position_embeddings_resampled(models, size, grid):
    """explain's whole-photo mode gives any aspect: the view asks transformers to interpolate position embeddings."""
    model = models["deit"]
    view = hf.as_classifier(model)
    layer, layout = view.camloc_feature_layer()
    seen = []
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _a, out: seen.append(out))
    try:
        with torch.no_grad():
            logits = view(_inputs(size))
            expected = model(_inputs(size), interpolate_pos_encoding=True).logits
    finally:
        handle.remove()
    torch.testing.assert_close(logits, expected)
    assert tuple(layout.to_grid(seen[0], size).shape[2:]) == grid


@pytest.mark.parametrize("name", ["levit", "pvt"])
def test_models_fixed_to_their_input_size_refuse_others_in_one_line(models, name):
    call = camloc.CAM(models[name]) if name == "levit" else hf.as_classifier(models[name])
    with pytest.raises(InvalidArgument, match=r"takes 64 x 64 inputs only \(.*\), not 64 x 96: resize") as err:
        call(_inputs((64, 96)))
    assert "\n" not in str(err.value)


def test_a_timm_model_inside_transformers_timm_wrapper_is_adapted_as_timm(tmp_path):
    """AutoModelForImageClassification loads timm hub models as TimmWrapper: CAM reads the timm model inside."""
    pytest.importorskip("timm")
    config = T.TimmWrapperConfig(architecture="test_resnet", num_labels=5, id2label=dict(LABELS))
    config.pretrained_cfg = {"input_size": [3, 64, 64], "mean": [0.5] * 3, "std": [0.25] * 3, "crop_pct": 0.8}
    config.pretrained_cfg |= {"interpolation": "bilinear"}
    wrapper = T.TimmWrapperForImageClassification(config).eval()
    x = _inputs()
    out = camloc.CAM(wrapper)(x, topk=5, upsample=False)
    fc = wrapper.timm_model.get_classifier()
    torch.testing.assert_close(out.logits, wrapper(x).logits)
    torch.testing.assert_close(out.raw.mean((2, 3)) + fc.bias.detach()[out.classes], out.logits.gather(1, out.classes))
    assert not hasattr(hf.as_classifier(wrapper), "camloc_feature_layer")  # no layer declared: the methods search
    info = camloc.model_info(wrapper)
    assert info.class_names == tuple(LABELS.values())
    assert (info.preprocess.size, info.preprocess.resize_size, info.preprocess.mean) == (64, 80, (0.5, 0.5, 0.5))


@pytest.mark.parametrize("name", ["resnet", "swin", "pvt_v2", "clip"])
def test_gradcam_at_the_declared_layer_is_relu_cam_over_the_grid_on_linear_heads(models, name):
    """What a hook-based Grad-CAM makes of the protocol: at the averaged map before a linear head, every position's
    gradient is w_c / (h w), so Grad-CAM = ReLU(CAM) / (h w). Written out here with a hook and autograd."""
    model = models[name]
    view = hf.as_classifier(model)
    layer, layout = view.camloc_feature_layer()
    kept = []
    handle = view.get_submodule(layer).register_forward_hook(lambda _m, _a, out: kept.append(out))
    x = _inputs()
    try:
        logits = view(x)
    finally:
        handle.remove()
    (grads,) = torch.autograd.grad(logits[:, 2].sum(), kept[0])
    activations, grads = layout.to_grid(kept[0], (64, 64)), layout.to_grid(grads, (64, 64))
    gradcam = (grads.mean((2, 3), keepdim=True) * activations).sum(1).relu().detach()
    cam = camloc.CAM(model)(x, classes=2, upsample=False).raw[:, 0]
    torch.testing.assert_close(gradcam, cam.relu() / (cam.shape[-2] * cam.shape[-1]))


def test_other_heads_on_known_backbones_are_not_read_as_classifiers():
    """A segmentation head is no classifier: refused in one line, and its view declares no feature layer."""
    config = T.SegformerConfig(**PVT, sr_ratios=[2, 1], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2])
    model = T.SegformerForSemanticSegmentation(config).eval()
    with pytest.raises(HeadNotFound, match="SegformerForSemanticSegmentation: not an image classifier") as err:
        hf.cam_parts(model)
    assert "\n" not in str(err.value)
    assert not hasattr(hf.as_classifier(model), "camloc_feature_layer")
