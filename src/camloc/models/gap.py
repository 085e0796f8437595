"""The paper's "-GAP" variants (Zhou et al., CVPR 2016, section 3.1).

Cut a CNN after a chosen conv stage and give it a CAM head.

``convert(vgg16)`` keeps VGG16 up to conv5_3 (+ its ReLU), so a 224-pixel input gives a 14x14 map, and
adds conv 3x3 / stride 1 / pad 1 with 1024 units, a ReLU, global average pooling and one linear layer:

    backbone (the kept layers) -> conv 3x3 (width) -> ReLU -> GAP -> Linear(width, num_classes)

The result is a plain ``nn.Module`` that :class:`camloc.CAM` accepts as it is. It still has to be
fine-tuned: the new conv and linear layers start from random weights.

What the authors' released models (zhoubolei/CAM, ``deploy_vgg16CAM.prototxt``,
``deploy_googlenetCAM.prototxt``) do, and what is chosen here:

- Both put a ReLU (``CAM_relu``) after the added conv, so ``relu=True`` is the default. ``relu=False``
  gives the paper text's literal conv -> GAP.
- Their added conv is grouped (``group: 2``), initialized Gaussian(0, 0.01). Here it is an ordinary
  conv (as the paper describes it), Kaiming-normal initialized (fan_out, ReLU gain, as torchvision
  initializes its own convs; for VGG16 this is a std of 0.0147, close to their 0.01), zero bias.
- The linear layer is Normal(0, 0.01) with zero bias, as torchvision's VGG classifier (their GoogLeNet's
  is Xavier, their AlexNet's Gaussian 0.01). Both draws come from torch's global RNG, conv first, so
  ``torch.manual_seed`` makes a conversion repeatable.
- Their VGG16 has dropout 0.5 between the pooling and the linear layer; here there is none (add it in
  training code if wanted).
- Their AlexNet-GAP is a different network (conv5 kept, then conv6 and conv7 with 512 units, 11x11
  maps); ``convert(alexnet)`` applies the paper's recipe to torchvision's AlexNet instead.

The kept part is found by torch.fx (torchvision's ``create_feature_extractor``, traced in train and eval
mode so that train-only branches such as stochastic depth keep working) and copied, not shared:
fine-tuning the result leaves the original model untouched. Its state_dict keys are the original names
under ``backbone.`` (``backbone.features.28.weight``), and each kept module keeps the original's
train/eval mode.
"""

from __future__ import annotations

import copy

import torch
import torch.fx as fx
import torchvision
from torch import Tensor, nn
from torch.func import functional_call
from torchvision.models.feature_extraction import DualGraphModule, create_feature_extractor

from ..errors import HeadNotFound, InvalidArgument

__all__ = ["GapVariant", "convert", "default_layer"]


class GapVariant(nn.Module):
    """A "-GAP" network: ``backbone -> conv 3x3 -> [ReLU] -> GAP -> fc``, as :func:`convert` makes it.

    State_dict keys ``backbone.<original name>``,
    ``conv.*`` and ``fc.*``. ``camloc_gap`` holds the arguments of :func:`convert` that rebuild it.
    """

    camloc_gap: dict

    def __init__(self, backbone: nn.Module, conv: nn.Conv2d, fc: nn.Linear, relu: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.conv = conv
        # Not in place: hooks on the conv (Grad-CAM and friends) must see its output unchanged.
        self.relu = nn.ReLU() if relu else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = fc

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``Tensor[N, num_classes]`` of the images ``x`` (``Tensor[N, 3, H, W]``)."""
        features = self.relu(self.conv(self.backbone(x)["features"]))
        return self.fc(torch.flatten(self.pool(features), 1))


def convert(
    model: nn.Module,
    *,
    layer: str | None = None,
    width: int = 1024,
    num_classes: int | None = None,
    relu: bool = True,
) -> GapVariant:
    """The "-GAP" variant of ``model``: everything it computes after ``layer`` replaced by a CAM head.

    ``layer``: qualified name of the module whose output feeds the new conv; by default
    :func:`default_layer` (VGG: conv5_3's ReLU, AlexNet: conv5's ReLU, GoogLeNet: inception4e).
    ``width``: output channels of the new 3x3 conv (the paper: 1024).
    ``num_classes``: outputs of the new linear layer; by default those of the model's last ``nn.Linear``.
    ``relu``: a ReLU after the new conv, as in the authors' released models.

    The result's ``camloc_gap`` attribute is a dict of these arguments with the defaults filled in:
    ``convert(fresh_model_of_the_same_architecture, **result.camloc_gap)`` has the same state_dict keys
    and shapes, so a checkpoint of the result loads into it strictly.
    """
    if layer is None:
        layer = default_layer(model)
    _check_layer(model, layer)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise InvalidArgument("width", f"width must be a positive int, not {width!r}")
    if num_classes is None:
        num_classes = _own_num_classes(model)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidArgument("num_classes", f"num_classes must be a positive int, not {num_classes!r}")

    backbone = _extract(model, layer)
    channels = _output_channels(backbone, model, layer)
    reference = next((p for p in backbone.parameters() if p.is_floating_point()), None)
    factory = {"device": reference.device, "dtype": reference.dtype} if reference is not None else {}

    conv = nn.Conv2d(channels, width, kernel_size=3, stride=1, padding=1, **factory)
    fc = nn.Linear(width, num_classes, **factory)
    with torch.no_grad():  # conv before fc, so that one seed gives one network
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        assert conv.bias is not None  # made with bias=True above
        nn.init.zeros_(conv.bias)
        nn.init.normal_(fc.weight, 0.0, 0.01)
        nn.init.zeros_(fc.bias)

    result = GapVariant(backbone, conv, fc, relu)
    result.camloc_gap = {"layer": layer, "width": width, "num_classes": num_classes, "relu": relu}
    result.train(model.training)
    _set_modes(result.backbone, _modes(model))
    return result


def default_layer(model: nn.Module) -> str:
    """The paper's cut for torchvision's VGG (any depth, with or without BatchNorm), AlexNet and GoogLeNet."""
    if isinstance(model, (torchvision.models.VGG, torchvision.models.AlexNet)):
        # conv5_3 (VGG) or conv5 (AlexNet) with its ReLU: the last ReLU before the last max pooling.
        children = list(model.features.named_children())
        last_pool = max(i for i, (_, m) in enumerate(children) if isinstance(m, nn.MaxPool2d))
        last_relu = max(i for i, (_, m) in enumerate(children[:last_pool]) if isinstance(m, nn.ReLU))
        return f"features.{children[last_relu][0]}"
    if isinstance(model, torchvision.models.GoogLeNet):
        return "inception4e"
    raise InvalidArgument(
        "layer",
        f"convert() has no default layer for {type(model).__name__}: pass layer= "
        f"(the module whose output feeds the new conv), e.g. one of {', '.join(_candidates(model))}",
    )


def _candidates(model: nn.Module) -> list[str]:
    """A few module names worth cutting at (quoted with repr), for error messages.

    The last convolutional blocks at the top level (or inside a lone
    container such as MobileNet's ``features``), auxiliary classifiers left out.
    """

    def blocks(parent: nn.Module, prefix: str) -> list[str]:
        return [
            prefix + name
            for name, m in parent.named_children()
            if "aux" not in name.lower() and any(isinstance(sub, nn.Conv2d) for sub in m.modules())
        ]

    names = blocks(model, "")
    if len(names) == 1:
        names = blocks(model.get_submodule(names[0]), names[0] + ".")
    return [repr(n) for n in names[-4:]]


def _check_layer(model: nn.Module, layer: str) -> None:
    if not isinstance(layer, str) or not layer or layer not in dict(model.named_modules()):
        raise InvalidArgument(
            "layer",
            f"layer {layer!r} is not a module of {type(model).__name__}; try one of {', '.join(_candidates(model))}",
        )


def _own_num_classes(model: nn.Module) -> int:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InvalidArgument(
            "num_classes", f"{type(model).__name__} has no nn.Linear to take the class count from: pass num_classes="
        )
    return linears[-1].out_features


class _Backbone(DualGraphModule):
    """The kept part: torchvision's train/eval pair of truncated graphs.

    Its deepcopy keeps every module's
    train/eval mode (torchvision's own puts the copy in train mode: a deep-copied eval model would then
    run BatchNorm on batch statistics).
    """

    def __deepcopy__(self, memo: dict) -> _Backbone:
        copied = super().__deepcopy__(memo)
        _set_modes(copied, _modes(self))
        return copied


def _extract(model: nn.Module, layer: str) -> _Backbone:
    """A copy of the part of ``model`` that computes ``layer``'s output, returned as ``{"features": ...}``."""
    modes = _modes(model)  # tracing switches the model between train and eval; it gets its own modes back
    try:
        # Traced in both train and eval mode; GoogLeNet's aux heads do not feed inception4e and are
        # dropped with everything else that does not lead to the layer. The two graphs are expected
        # to differ outside the kept part, hence no warning.
        extractor = create_feature_extractor(model, {layer: "features"}, suppress_diff_warning=True)
        shared = _Backbone(extractor, extractor.train_graph, extractor.eval_graph, type(model).__name__)
        return copy.deepcopy(shared)
    except fx.proxy.TraceError as err:
        reason = str(err).splitlines()[0]
        raise HeadNotFound(
            f"{type(model).__name__} cannot be traced by torch.fx ({reason}); convert() needs that"
        ) from err
    except ValueError as err:  # torchvision's message spans several lines and names return_nodes
        raise InvalidArgument(
            "layer", f"layer {layer!r} is not called by {type(model).__name__}.forward in both train and eval mode"
        ) from err
    finally:
        _set_modes(model, modes)


def _modes(module: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in module.named_modules()}


def _set_modes(module: nn.Module, modes: dict[str, bool]) -> None:
    """Give each module the mode recorded under its name (a BatchNorm frozen in eval mode stays frozen)."""
    for name, m in module.named_modules():
        m.training = modes.get(name, m.training)
        if isinstance(m, DualGraphModule):
            m.graph = m.train_graph if m.training else m.eval_graph


def _output_channels(backbone: nn.Module, model: nn.Module, layer: str) -> int:
    """Channels of the layer's output, from a run of the kept part on a 224-pixel image.

    The run is shape-only on the
    meta device, or (for a graph that holds real tensors of its own) a real one on zeros.
    """
    first_conv = next((m for m in backbone.modules() if isinstance(m, nn.Conv2d)), None)
    example = torch.zeros(1, first_conv.in_channels if first_conv is not None else 3, 224, 224)
    was_training = backbone.training
    backbone.eval()  # no BatchNorm statistics are updated, no dropout drawn from the RNG
    try:
        with torch.no_grad():
            try:
                meta = {k: v.to("meta") for k, v in (*backbone.named_parameters(), *backbone.named_buffers())}
                out = functional_call(backbone, meta, (example.to("meta"),))["features"]
            except (RuntimeError, NotImplementedError):
                reference = next(backbone.parameters(), None)
                out = backbone(example if reference is None else example.to(reference))["features"]
    finally:
        backbone.train(was_training)
    if out.ndim != 4:
        raise InvalidArgument(
            "layer",
            f"layer {layer!r} of {type(model).__name__} outputs shape {tuple(out.shape)}, "
            f"not an (N, C, H, W) feature map",
        )
    return out.shape[1]
