"""Which layer a gradient method explains by default, and how that layer lays out its output.

A user asking for "the Grad-CAM of this model" means its last spatial stage: ``layer4`` of a
ResNet, ``stages.3`` of a ConvNeXt, ``layers.3`` of a Swin. Models say which module that is:

- a model may declare it itself with a method ``camloc_feature_layer() -> (qualified_name, Layout)``
  (camloc's Hugging Face wrapper does);
- timm models list their feature maps in ``feature_info``; the last entry is the last stage, with
  its channel count. Three corrections make it the map a user means:

  * the map the head pools may come after that stage (EfficientNet's ``conv_head`` + ``bn2``,
    GhostNet's last block, FastViT's ``final_conv``: ``num_features`` differs from the stage's
    channels): then the module that returns ``forward_features``' output is the layer;
  * models that read only the class token after their last block (ViT, DeiT, ConViT, PiT, TNT
    with ``global_pool="token"``) give the patch tokens of that block's output no gradient: the
    layer is the norm in front of the last block's attention (``blocks.11.norm1``, as pytorch-grad-cam
    advises), whose patch tokens the class token attends to;
  * an entry naming no module of the model (a renamed stage) is handled as the first case; where
    ``forward_features`` cannot be traced to find that module, timm's final ``norm`` is taken when its
    width is ``num_features`` (Twins).

- torchvision's VisionTransformer reads its class token too: the layer is ``ln_1`` of its last
  encoder layer.

Other models have no declaration: the traced default of :mod:`camloc.maps.traced` (the tensor
pooled globally or flattened first) applies.
"""

from __future__ import annotations

import torch.fx as fx
from torch import Tensor, nn

from ..errors import HeadNotFound
from .layout import Layout

__all__ = ["default_target", "layer_layout"]

# Blocks that attend from the class token to the patch tokens after the last feature stage (CaiT,
# XCiT, VOLO): there the stage's own output reaches the head, so it stays the layer.
_CLASS_ATTENTION = ("blocks_token_only", "cls_attn_blocks", "post_network")
# The norm in front of a transformer block's attention, by the names timm gives it.
_ATTENTION_NORMS = ("norm1", "norm_out")


def default_target(model: nn.Module) -> tuple[str, Layout] | None:
    """The layer a gradient method explains by default, when the model declares one, and its layout.

    Args:
        model: a classifier; a model with a method ``camloc_feature_layer()`` returning
            ``(qualified_name, Layout)`` is taken at its word; timm models are read from their
            ``feature_info`` (see the module's docstring).

    Returns:
        ``(qualified name of the module, its Layout)``, or None when the model declares nothing.

    Raises:
        HeadNotFound: the declared layer is no module of the model, or a class-token model has no
            attention norm to explain.
    """
    declare = getattr(model, "camloc_feature_layer", None)
    if callable(declare):
        name, layout = declare()
        _check_module(model, name, "its camloc_feature_layer()")
        return name, layout
    torchvision_vit = _torchvision_vit(model)
    if torchvision_vit is not None:
        return torchvision_vit
    info = getattr(model, "feature_info", None)
    if not isinstance(info, list) or not info or not isinstance(info[-1], dict) or "module" not in info[-1]:
        return None
    last = info[-1]
    name, channels = str(last["module"]), int(last["num_chs"])
    modules = dict(model.named_modules())
    reads_class_token = getattr(model, "global_pool", None) == "token" and not any(
        hasattr(model, a) for a in _CLASS_ATTENTION
    )
    if reads_class_token and name in modules:
        return _attention_norm(model, name, modules[name]), Layout(channels=channels)
    features = getattr(model, "num_features", None)
    if name not in modules or (isinstance(features, int) and features != channels):
        pooled = _forward_features_module(model)
        if pooled is None and isinstance(modules.get("norm"), nn.LayerNorm) and _width(modules["norm"]) == features:
            pooled = "norm"  # an untraceable forward_features (Twins) ending in timm's final norm
        if pooled is not None and isinstance(features, int):
            return pooled, Layout(channels=features)
        _check_module(model, name, "its feature_info")
    return name, Layout(channels=channels)


def _torchvision_vit(model: nn.Module) -> tuple[str, Layout] | None:
    """The norm of torchvision's ViT in front of the last encoder layer's attention (it reads the class token)."""
    layers = getattr(getattr(model, "encoder", None), "layers", None)
    if type(model).__name__ != "VisionTransformer" or not hasattr(model, "class_token"):
        return None
    if not isinstance(layers, nn.Sequential) or not len(layers) or not hasattr(layers[-1], "ln_1"):
        return None
    last = list(layers.named_children())[-1][0]
    return f"encoder.layers.{last}.ln_1", Layout(channels=getattr(model, "hidden_dim", None))


def layer_layout(model: nn.Module, name: str) -> Layout:
    """The layout of the named module's output, as far as the model tells it.

    The channel count comes from timm's ``feature_info`` entry for the module, else from the module
    itself where its type says it (a LayerNorm normalizes the channel axis; a convolution, linear
    layer or batch norm gives its output width); unknown otherwise (then a 4-D output is read as
    ``(N, C, h, w)``).

    Args:
        model: the classifier.
        name: the qualified name of one of its modules.
    """
    info = getattr(model, "feature_info", None)
    if isinstance(info, list):
        for entry in info:
            if isinstance(entry, dict) and entry.get("module") == name and "num_chs" in entry:
                return Layout(channels=int(entry["num_chs"]))
    return Layout(channels=_width(model.get_submodule(name)))


def _width(module: nn.Module) -> int | None:
    """The channel count of a module's output where its type fixes it."""
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return module.normalized_shape[0]
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
        return module.num_features if isinstance(module, nn.BatchNorm2d) else module.num_channels
    return None


def _attention_norm(model: nn.Module, name: str, stage: nn.Module) -> str:
    """The norm in front of the attention of the last block of ``stage`` (a block, or a list of them, nested)."""
    while not any(isinstance(getattr(stage, n, None), nn.Module) for n in _ATTENTION_NORMS):
        blocks = getattr(stage, "blocks", stage)  # PiT, CrossViT: stages holding blocks
        if not isinstance(blocks, nn.Sequential | nn.ModuleList) or not len(blocks):
            raise HeadNotFound(
                f"{type(model).__name__} reads only its class token after {name!r}, whose patch tokens then get no "
                "gradient; name a layer before its last attention with target_layer="
            )
        last = str(len(blocks) - 1)
        name, stage = f"{name}.blocks.{last}" if blocks is not stage else f"{name}.{last}", blocks[-1]
    norm = next(n for n in _ATTENTION_NORMS if isinstance(getattr(stage, n, None), nn.Module))
    return f"{name}.{norm}"


def _check_module(model: nn.Module, name: str, source: str) -> None:
    if not isinstance(name, str) or not name or name not in dict(model.named_modules()):
        raise HeadNotFound(f"{type(model).__name__}: {source} names {name!r}, which is not one of its modules")


class _Stages(fx.Tracer):
    """Keeps every module of the model one call, so ``forward_features`` traces as a list of stages."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname.startswith("model.")


class _ForwardFeatures(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self.model, "forward_features")(x)  # noqa: B009 - not every module has it


def _forward_features_module(model: nn.Module) -> str | None:
    """The module whose output ``forward_features`` returns (found by tracing it), or None."""
    if not callable(getattr(model, "forward_features", None)):
        return None
    was_training = model.training
    model.eval()
    try:
        graph = _Stages().trace(_ForwardFeatures(model))
    except Exception:  # noqa: BLE001 - an untraceable forward_features leaves feature_info's stage
        return None
    finally:
        model.train(was_training)
    output = next(n for n in reversed(graph.nodes) if n.op == "output")
    value = output.args[0]
    if isinstance(value, fx.Node) and value.op == "call_module" and str(value.target).startswith("model."):
        return str(value.target).removeprefix("model.")
    return None
