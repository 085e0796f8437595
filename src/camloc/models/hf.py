"""Hugging Face ``transformers`` image classifiers as they come: logits and feature maps.

A ``transformers`` classifier returns an output object whose ``.logits`` are the scores, names its
classes in ``config.id2label``, and keeps its resizing and normalization in the
``preprocessor_config.json`` saved beside it. camloc reads all three (the last two in
:mod:`camloc.models.hf_info`); nothing has to be wrapped by hand.

Feature maps, per architecture (``config.model_type``), found from the module that outputs the last
spatial map and how the head pools it:

- CNNs that average their last stage before one linear layer (ResNet, RegNet, BiT, EfficientNet,
  MobileNetV1/V2, MobileViT, MobileViTV2, PoolFormer after its norm, SegFormer's classifier): CAM is
  exact (the map's mean plus the bias is the logit).
- Swin / SwinV2, FocalNet, PVTv2: tokens after a per-token LayerNorm, averaged, then one linear layer: exact.
- SwiftFormer: the map after BatchNorm, averaged, two linear heads averaged: affine, exact.
- I-JEPA, SigLIP (tokens), CLIP / MetaCLIP 2 (tokens after the class token): averaged, linear: exact.
- TimmWrapper (timm models loaded through transformers): :func:`~camloc.models.adapter.adapt` reads
  the timm model inside as a timm model.
- LeViT: tokens averaged, then BatchNorm1d + linear (two of them averaged with the teacher head):
  affine in eval mode, so the weights autograd reads through it are exact.
- ConvNeXt / ConvNeXtV2 (LayerNorm after pooling), BEiT / Data2Vec-vision with mean pooling
  (``fc_norm`` after pooling): the head is linearized at each image (autograd through the head only).
- DINOv2 (with or without registers): the classifier reads the class token *and* the patch mean;
  CAM gives the patch-mean half, ``M_c = sum_k w_k^c f_k`` with the weights of the patch half, so the
  map's mean plus the bias plus the class token's term is the logit.
- ViT, DeiT, BEiT without mean pooling, PVT (v1): the classifier reads the class token only; CAM is
  not defined and is refused in one line. The Grad-CAM family works on them: their feature layer
  is the input LayerNorm of the last block, where attention still mixes patches into the class token.

:func:`as_classifier` is the same module seen as a plain classifier: ``forward`` returns the logits
(inputs of another size than the config's run with interpolated position embeddings where the model
can), and ``camloc_feature_layer()`` names the feature layer; module names stay the model's own. CAM
runs a model given as it comes through it, ``hf:FOLDER`` (:func:`loaded`) returns it, and the
runners that call a model directly read its output with :func:`camloc.maps.core.output_tensor`.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import HeadNotFound, InvalidArgument
from .hf_info import native_size, processor_settings
from .layout import Layout

__all__ = ["as_classifier", "cam_parts", "feature_layer", "is_hf_model", "loaded"]


Head = Callable[[Tensor], Tensor]  # Tensor[N, C, h, w] feature map -> Tensor[N, classes] logits


def is_hf_model(model: object) -> bool:
    """Whether ``model`` is a ``transformers`` model (False, importing nothing, when transformers is not loaded)."""
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)


# ------------------------------------------------------------------------------------------ the view

_VIEWS: dict[type, type] = {}


def as_classifier(model: nn.Module) -> nn.Module:
    """``model`` itself, or for a ``transformers`` model the same model seen as a plain classifier.

    The view shares the model's ``__dict__``: the same modules, parameters, hooks, train/eval mode and
    module names, so nothing is copied and nothing on the model changes. Only ``forward(pixel_values)``
    differs: it returns ``Tensor[N, classes]`` logits. For the architectures :func:`feature_layer` knows
    it also answers ``camloc_feature_layer()``: the module whose output is the last spatial feature map
    and its :class:`~camloc.models.layout.Layout` (the Grad-CAM family's default target layer); other
    models do not declare one, and the methods' own search applies.
    """
    if not is_hf_model(model) or getattr(type(model), "camloc_view", False):
        return model
    cls = type(model)
    if cls not in _VIEWS:
        _VIEWS[cls] = _view_class(cls)
    view: nn.Module = object.__new__(_VIEWS[cls])
    view.__dict__ = model.__dict__  # the same dict object: one state, two classes
    return view


def _view_class(cls: Any) -> type:
    interpolates = "interpolate_pos_encoding" in inspect.signature(cls.forward).parameters

    def forward(self: Any, pixel_values: Tensor) -> Tensor:
        """``Tensor[N, classes]`` logits of ``pixel_values`` ``Tensor[N, 3, H, W]`` (RGB).

        Raises:
            InvalidArgument: the model runs at its own input size only (LeViT, PVT) and this is another.
        """
        options: dict[str, Any] = {"return_dict": True}
        size, native = tuple(pixel_values.shape[-2:]), native_size(self.config)
        if native is not None and size != native:
            if self.config.model_type in _FIXED_SIZE:
                raise InvalidArgument(
                    "images",
                    f"{cls.__name__} takes {native[0]} x {native[1]} inputs only ({_FIXED_SIZE[self.config.model_type]}"
                    f"), not {size[0]} x {size[1]}: resize the images to its size (resize mode crop or squash)",
                    arguments=(),
                )
            if interpolates or self.config.model_type in _INTERPOLATE_THROUGH_KWARGS:  # ViT, DeiT, BEiT, Swin, CLIP
                # position embeddings resampled to the input's grid
                options["interpolate_pos_encoding"] = True
        if getattr(self, "camloc_flips_channels", False):
            pixel_values = pixel_values.flip(1)  # RGB -> BGR, as the model's processor does (see loaded)
        return cls.forward(self, pixel_values, **options).logits

    def camloc_feature_layer(self: nn.Module) -> tuple[str, Layout]:
        """``(module name, layout)`` of the last spatial feature map; see :func:`feature_layer`."""
        return feature_layer(self)

    namespace: dict[str, Any] = {
        "forward": forward,
        "camloc_view": True,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    }
    known = getattr(getattr(cls, "config_class", None), "model_type", None) in _PLANS
    if known and "ForImageClassification" in cls.__name__:  # the classifiers known here; others: the methods search
        namespace["camloc_feature_layer"] = camloc_feature_layer
    return type(cls.__name__, (cls,), namespace)


# classifiers whose forward passes interpolate_pos_encoding on to the vision tower in **kwargs
_INTERPOLATE_THROUGH_KWARGS = {"clip", "metaclip_2", "siglip"}
# model type -> why it runs at its configured input size only
_FIXED_SIZE = {
    "levit": "its attention biases are fixed to that grid",
    "pvt": "its position embeddings are not resampled",
}


# ---------------------------------------------------------------------------------- feature maps


@dataclass(frozen=True)
class _Plan:
    """Where a model's last spatial map comes out, and what CAM makes of its head."""

    layer: str  # qualified module name, relative to the classifier (the model users hold)
    layout: Layout
    linear: nn.Module | None = None  # the head's one linear layer, when pooling is followed by it alone
    head: Head | None = None  # otherwise the head from the map, linearized by autograd
    how: str = "linear head"  # what CAM is on this model, for descriptions
    refusal: str | None = None  # why CAM is not defined (the layer still serves the gradient methods)


def feature_layer(model: nn.Module) -> tuple[str, Layout]:
    """``(name, layout)``: the module of ``model`` whose output is its last spatial feature map.

    The name is relative to ``model`` (the ``transformers`` classifier itself, e.g.
    ``"resnet.encoder.stages.3"``, ``"swin.layernorm"``, ``"vit.layers.11.layernorm_before"``); the
    layout reads the module's output as ``(N, C, h, w)``.

    Raises:
        HeadNotFound: camloc does not know this architecture.
    """
    plan = _plan(model)
    return plan.layer, plan.layout


def cam_parts(model: nn.Module) -> tuple[Callable[[Tensor], tuple[Tensor, Tensor]], nn.Module | None, Head | None, str]:
    """``(run, classifier, head, description)`` of :class:`~camloc.models.adapter.CamAdapter` for a transformers model.

    ``run(x)`` gives ``(Tensor[N, C, h, w] feature map, Tensor[N, classes] logits)`` from one forward
    pass of the model itself (a forward hook on the feature layer, removed after the call).

    Raises:
        HeadNotFound: CAM is not defined for this model (it reads a class token), or camloc does not know it.
    """
    plan = _plan(model)
    name = type(model).__name__
    if plan.refusal is not None:
        raise HeadNotFound(f"{name}: {plan.refusal}; CAM is not defined, use a gradient method such as gradcam")
    classifier = as_classifier(model)
    module = model.get_submodule(plan.layer)

    def run(x: Tensor) -> tuple[Tensor, Tensor]:
        captured: list[Any] = []
        handle = module.register_forward_hook(lambda _m, _args, out: captured.append(out))
        try:
            logits = classifier(x)
        finally:
            handle.remove()
        if not captured or not isinstance(captured[-1], Tensor):
            raise HeadNotFound(f"{name}: {plan.layer} gave no feature tensor in forward")
        return plan.layout.to_grid(captured[-1], (x.shape[-2], x.shape[-1]), owner=name), logits

    return run, plan.linear, plan.head, f"Hugging Face {name}: features of {plan.layer}, {plan.how}"


def _plan(model: nn.Module) -> _Plan:
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    make = _PLANS.get(str(kind))
    if make is None:
        raise HeadNotFound(
            f"{type(model).__name__}: camloc does not know where Hugging Face {kind!r} models keep their last "
            f"feature map (it knows {', '.join(sorted(_PLANS))}); name a target layer for a gradient method"
        )
    try:
        plan = make(model, str(getattr(model, "base_model_prefix", "")), config)
    except AttributeError:  # another head on a known backbone: segmentation, masked image modeling, ...
        raise HeadNotFound(
            f"{type(model).__name__}: not an image classifier (AutoModelForImageClassification); camloc reads the "
            f"feature map of {kind!r} classifiers only"
        ) from None
    if plan.refusal is None and plan.linear is None and plan.head is None:
        return _Plan(plan.layer, plan.layout, refusal="its classifier is not a single linear layer after pooling")
    return plan


def _last(model: nn.Module, container: str) -> str:
    """The name of the last child of the module list ``container``."""
    return f"{container}.{len(list(model.get_submodule(container).children())) - 1}"


def _last_named(model: nn.Module, suffix: str) -> str:
    """The name of the last module whose name ends with ``suffix``."""
    names = [n for n, _ in model.named_modules() if n.endswith(suffix)]
    if not names:
        raise HeadNotFound(f"{type(model).__name__}: no module named *{suffix}")
    return names[-1]


def _linear(head: nn.Module) -> nn.Module | None:
    """The one linear layer of a head that is ``Linear`` or ``Sequential(Flatten, [Dropout,] Linear)``."""
    layers = list(head) if isinstance(head, nn.Sequential) else [head]
    if not isinstance(layers[-1], nn.Linear):
        return None
    return layers[-1] if all(isinstance(m, (nn.Flatten, nn.Dropout, nn.Identity)) for m in layers[:-1]) else None


def _width(layer: nn.Module) -> int | None:
    return layer.in_features if isinstance(layer, nn.Linear) else None


def _pooled(f: Tensor) -> Tensor:
    return f.mean(dim=(2, 3))


def _cnn_stages(model: Any, base: str, config: Any) -> _Plan:
    """ResNet, RegNet: the last encoder stage, average pooling, ``Sequential(Flatten, Linear)``."""
    layout = Layout(channels=config.hidden_sizes[-1])
    return _Plan(_last(model, f"{base}.encoder.stages"), layout, linear=_linear(model.classifier))


def _bit(model: Any, base: str, config: Any) -> _Plan:
    """BiT: the last stage through the final norm + activation, average pooling, linear."""
    return _Plan(f"{base}.norm", Layout(channels=config.hidden_sizes[-1]), linear=_linear(model.classifier))


def _efficientnet(model: Any, base: str, config: Any) -> _Plan:
    """EfficientNet: the top convolution's activation, average pooling (``pooling_type='mean'``), linear."""
    plan = _Plan(f"{base}.encoder.top_activation", Layout(channels=config.hidden_dim), linear=_linear(model.classifier))
    if config.pooling_type != "mean":
        return _Plan(plan.layer, plan.layout, refusal=f"it pools with {config.pooling_type!r}, not the mean")
    return plan


def _mobilevit(model: Any, base: str, config: Any) -> _Plan:
    """MobileViT: the 1x1 expansion convolution, averaged, linear; MobileViTV2: the last encoder layer."""
    if config.model_type == "mobilevit":
        layer = f"{base}.conv_1x1_exp"
        channels = config.neck_hidden_sizes[-1]
    else:
        layer = _last(model, f"{base}.encoder.layer")
        channels = _width(model.classifier)
    return _Plan(layer, Layout(channels=channels), linear=_linear(model.classifier))


def _mobilenet(model: Any, base: str, config: Any) -> _Plan:
    """MobileNetV1 / V2: the last convolution, average pooling, linear."""
    layer = f"{base}.conv_1x1" if config.model_type == "mobilenet_v2" else _last(model, f"{base}.layer")
    return _Plan(layer, Layout(channels=_width(model.classifier)), linear=_linear(model.classifier))


def _segformer(model: Any, base: str, config: Any) -> _Plan:
    """SegFormer's classifier: the last stage's map (or tokens), averaged, linear."""
    layout = Layout(channels=config.hidden_sizes[-1], prefix=0)
    return _Plan(_last(model, f"{base}.stages"), layout, linear=_linear(model.classifier))


def _poolformer(model: Any, base: str, config: Any) -> _Plan:
    """PoolFormer: the map after its GroupNorm (one group: a norm of the whole image), averaged, linear."""
    return _Plan("norm", Layout(channels=config.hidden_sizes[-1]), linear=_linear(model.classifier))


def _swiftformer(model: Any, base: str, config: Any) -> _Plan:
    """SwiftFormer: the map after its BatchNorm, averaged, two linear heads averaged (affine: exact)."""
    if not isinstance(model.head, nn.Linear):
        return _Plan("norm", Layout(channels=config.embed_dims[-1]))  # refused: no classifier

    def head(f: Tensor) -> Tensor:
        pooled = _pooled(f)
        return (model.head(pooled) + model.dist_head(pooled)) / 2

    return _Plan("norm", Layout(channels=config.embed_dims[-1]), head=head, how="two linear heads averaged (exact)")


def _convnext(model: Any, base: str, config: Any) -> _Plan:
    """ConvNeXt / ConvNeXtV2: the last stage, averaged, LayerNorm, linear: linearized through the norm."""
    norm = getattr(model, base).layernorm
    return _Plan(
        _last(model, f"{base}.encoder.stages"),
        Layout(channels=config.hidden_sizes[-1]),
        head=lambda f: model.classifier(norm(_pooled(f))),
        how="head linearized through the LayerNorm after pooling",
    )


def _swin(model: Any, base: str, config: Any) -> _Plan:
    """Swin / SwinV2 / FocalNet: tokens after the final per-token LayerNorm, averaged, linear."""
    channels = getattr(model, base).num_features
    return _Plan(f"{base}.layernorm", Layout(channels=channels, prefix=0), linear=_linear(model.classifier))


def _pvt_v2(model: Any, base: str, config: Any) -> _Plan:
    """PVTv2: the last stage's LayerNorm over its tokens, averaged, linear."""
    layer = f"{_last(model, f'{base}.encoder.layers')}.layer_norm"
    return _Plan(layer, Layout(channels=config.hidden_sizes[-1], prefix=0), linear=_linear(model.classifier))


def _levit(model: Any, base: str, config: Any) -> _Plan:
    """LeViT: the last stage's tokens, averaged, BatchNorm1d + linear (and the teacher head, averaged)."""
    heads = [model.classifier] + ([model.classifier_distill] if hasattr(model, "classifier_distill") else [])
    if not all(hasattr(h, "linear") for h in heads):
        return _Plan(_last(model, f"{base}.encoder.stages"), Layout(prefix=0))  # refused: no classifier

    def head(f: Tensor) -> Tensor:
        pooled = _pooled(f)
        return torch.stack([h(pooled) for h in heads]).mean(dim=0)

    how = "affine head (BatchNorm1d + linear), exact in eval mode"
    layout = Layout(channels=config.hidden_sizes[-1], prefix=0)
    return _Plan(_last(model, f"{base}.encoder.stages"), layout, head=head, how=how)


def _patch(config: Any) -> tuple[int, int]:
    p = config.patch_size
    return (p, p) if isinstance(p, int) else (int(p[0]), int(p[1]))


def _class_token(model: Any, base: str, config: Any, prefix: int, suffix: str = "layernorm_before") -> _Plan:
    """A classifier that reads the class token: CAM refused, the last block's input norm for the gradient methods."""
    layout = Layout(channels=config.hidden_size, prefix=prefix, patch=_patch(config))
    why = "its classifier reads the class token, not pooled patch tokens"
    return _Plan(_last_named(model, suffix), layout, refusal=why)


def _vit(model: Any, base: str, config: Any) -> _Plan:
    """ViT (class token) and DeiT (class and distillation tokens)."""
    return _class_token(model, base, config, prefix=2 if config.model_type == "deit" else 1)


def _beit(model: Any, base: str, config: Any) -> _Plan:
    """BEiT / Data2Vec-vision: with mean pooling, patch tokens averaged, LayerNorm, linear; else the class token."""
    if not config.use_mean_pooling:
        return _class_token(model, base, config, prefix=1)
    pool_norm = getattr(model, base).pooler.layernorm
    return _Plan(
        f"{base}.layernorm",  # the identity under mean pooling: the last layer's tokens
        Layout(channels=config.hidden_size, prefix=1, patch=_patch(config)),
        head=lambda f: model.classifier(pool_norm(_pooled(f))),
        how="head linearized through the LayerNorm after pooling",
    )


def _dinov2(model: Any, base: str, config: Any) -> _Plan:
    """DINOv2: the classifier reads [class token, mean of the patch tokens]; CAM is the patch half."""
    prefix = 1 + int(getattr(config, "num_register_tokens", 0) or 0)
    width = config.hidden_size
    if not isinstance(model.classifier, nn.Linear):
        return _Plan(f"{base}.layernorm", Layout(channels=width, prefix=prefix))  # refused: no classifier

    def head(f: Tensor) -> Tensor:  # the class token's half held at zero: only the patch half's weights count
        return model.classifier(torch.cat([f.new_zeros(f.shape[0], width), _pooled(f)], dim=1))

    how = "the patch-mean half of the linear head (the class token's term is left out)"
    layout = Layout(channels=width, prefix=prefix, patch=_patch(config))
    return _Plan(f"{base}.layernorm", layout, head=head, how=how)


def _mean_tokens(model: Any, base: str, config: Any) -> _Plan:
    """ViTs whose classifier averages the tokens (I-JEPA; CLIP's and SigLIP's vision towers), one linear layer."""
    vision = getattr(config, "vision_config", None) or config
    if config.model_type == "ijepa":
        layer, prefix = f"{base}.layernorm", 0
    elif config.model_type == "siglip":
        layer, prefix = "vision_model.post_layernorm", 0
    else:  # CLIP, MetaCLIP 2: the last encoder layer's tokens, the class token left out of the mean
        layer, prefix = _last(model, "vision_model.encoder.layers"), 1
    layout = Layout(channels=vision.hidden_size, prefix=prefix, patch=_patch(vision))
    return _Plan(layer, layout, linear=_linear(model.classifier))


def _hgnet(model: Any, base: str, config: Any) -> _Plan:
    """HGNetV2: the last stage, average pooling, linear (``fc``)."""
    return _Plan(_last(model, "encoder.stages"), Layout(channels=config.hidden_sizes[-1]), linear=_linear(model.fc))


def _pvt(model: Any, base: str, config: Any) -> _Plan:
    """PVT (v1): a class token joins the last stage and the classifier reads it."""
    layer = _last_named(model, "layer_norm_1")
    layout = Layout(channels=config.hidden_sizes[-1], prefix=1)
    return _Plan(layer, layout, refusal="its classifier reads the class token, not pooled patch tokens")


_PLANS: dict[str, Callable[[nn.Module, str, Any], _Plan]] = {
    "resnet": _cnn_stages,
    "regnet": _cnn_stages,
    "bit": _bit,
    "efficientnet": _efficientnet,
    "mobilevit": _mobilevit,
    "mobilevitv2": _mobilevit,
    "mobilenet_v1": _mobilenet,
    "mobilenet_v2": _mobilenet,
    "segformer": _segformer,
    "poolformer": _poolformer,
    "swiftformer": _swiftformer,
    "focalnet": _swin,
    "convnext": _convnext,
    "convnextv2": _convnext,
    "swin": _swin,
    "swinv2": _swin,
    "pvt_v2": _pvt_v2,
    "levit": _levit,
    "vit": _vit,
    "deit": _vit,
    "beit": _beit,
    "data2vec-vision": _beit,
    "dinov2": _dinov2,
    "dinov2_with_registers": _dinov2,
    "pvt": _pvt,
    "ijepa": _mean_tokens,
    "clip": _mean_tokens,
    "metaclip_2": _mean_tokens,
    "siglip": _mean_tokens,
    "hgnet_v2": _hgnet,
}


def loaded(model: nn.Module) -> nn.Module:
    """The view (:func:`as_classifier`) of a model camloc loaded itself; it feeds BGR where the processor flips RGB.

    MobileViT's processor flips the channels to BGR after rescaling, which camloc's preprocessing does
    not do: the model that ``hf:PATH`` gives flips its input instead, so that it sees what it was trained on.
    """
    view = as_classifier(model)
    found = processor_settings(model)
    if found is not None and found[0].get("do_flip_channel_order"):
        object.__setattr__(view, "camloc_flips_channels", True)  # a plain attribute; camloc made this model
    return view
