"""The base of the Grad-CAM family: any target layer, batched, on the model's device, no numpy, no hooks.

Each method is a small ``combine(activations, gradients, ...) -> maps`` on one base,
:class:`TracedMethod`. The model is traced once with torch.fx and the target layer's output is made
a leaf of the autograd graph: gradients flow only from the scores down to that layer (never
further, never into the parameters, which are passed detached), and no hook is left on the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import HeadNotFound, InvalidArgument
from ..models.adapter import FoldedCopy
from ..models.graph import is_gap, module_of, output_node, trace_with_leaf
from ..utils import model_device
from .core import CamOutput, Classes, Normalize, autocast, check_amp, choose_classes, finish_maps, prepare_input

__all__ = ["ClassTarget", "Target", "TracedMethod", "weighted_sum"]

Target = Callable[[Tensor], Tensor]  # one image's model output -> a scalar score


class ClassTarget:
    """The logit of one class: the default target."""

    def __init__(self, index: int) -> None:
        self.index = int(index)

    def __call__(self, output: Tensor) -> Tensor:
        """The logit ``output[..., index]`` of one image's output ``Tensor[num_classes]``."""
        return output[..., self.index]


def _leaf(t: Tensor) -> Tensor:
    """Cut the autograd graph here: the target layer's output becomes a leaf that wants gradients."""
    return t.detach().requires_grad_(torch.is_grad_enabled())


fx.wrap("_leaf")


class TracedMethod:
    """Base of the traced methods: runs the model once, returning the target layer's output as a leaf.

    A subclass sets ``name`` and ``needs_gradients`` and implements :meth:`combine`.

    Args:
        model: the classifier.
        target_layer: the module whose output is explained, by its qualified name (default: the
            last spatial feature map, the tensor that is pooled globally or flattened first).
        relu: apply a ReLU to the maps (as the methods' papers do).
        normalize: ``"none"``, ``"minmax"`` or ``"max"``, applied to ``raw`` and to ``maps`` separately.
        upsample_mode: ``F.interpolate`` mode for ``maps``.
        amp: ``"bf16"`` or ``"fp16"``: the forward pass under ``torch.autocast`` in that type, the
            maps combined in float32 (None: all in float32).
    """

    name = "base"
    needs_gradients = True
    reuses_forward = False

    def __init__(
        self,
        model: nn.Module,
        target_layer: str | None = None,
        *,
        relu: bool = True,
        normalize: Normalize = "none",
        upsample_mode: str = "bilinear",
        amp: str | None = None,
    ) -> None:
        self.model = model
        self.amp = check_amp(amp)
        self.relu = relu
        self.normalize = normalize
        self.upsample_mode = upsample_mode
        self._run, self.target_layer = _split(model, target_layer)
        self._folded = FoldedCopy(self._run, model)
        self.fuse_batchnorm = True
        self.channels_last: bool | None = None  # None: on the CPU

    @property
    def device(self) -> torch.device:
        """The model's device, where the maps are computed."""
        return model_device(self.model)

    def __call__(
        self,
        images: Tensor,
        topk: int = 1,
        classes: Classes | None = None,
        targets: Sequence[Target] | Sequence[Sequence[Target]] | None = None,
        upsample: bool = True,
    ) -> CamOutput:
        """Maps of the top-k classes, of ``classes``, or of ``targets`` (callables on each image's output).

        Args:
            images: ``Tensor[N, 3, H, W]`` normalized model input.
            topk: how many of the best classes, when neither ``classes`` nor ``targets`` is given.
            classes: one index for every image, one index per image, or an equal-length list per image.
            targets: per image, one callable or an equal-length list of callables, each mapping the
                image's output ``Tensor[num_classes]`` to a scalar score.
            upsample: also give the maps upsampled to ``(H, W)``.

        Returns:
            :class:`~camloc.maps.CamOutput`; ``classes`` is -1 for maps of custom targets.
        """
        x = prepare_input(images, self.device, self.channels_last)
        with torch.enable_grad() if self.needs_gradients else torch.no_grad():
            with autocast(x.device, self.amp):
                activations, logits = self._forward(x)
            logits = logits.float()  # scores and gradients of the scores in float32
            target_lists: list[list[Target]]
            if targets is None:
                chosen, scores = choose_classes(logits, topk, classes)
                target_lists = [[ClassTarget(c) for c in row] for row in chosen.tolist()]
            else:
                target_lists = [list(t) if isinstance(t, (list, tuple)) else [cast(Target, t)] for t in targets]
                chosen = torch.full((len(target_lists), len(target_lists[0])), -1, device=logits.device)
                scores = torch.stack(
                    [torch.stack([t(logits[i]).detach().float() for t in ts]) for i, ts in enumerate(target_lists)]
                )
            raw = torch.stack(
                [
                    self.maps_for(x, activations, logits, [ts[j] for ts in target_lists])
                    for j in range(len(target_lists[0]))
                ],
                dim=1,
            )
        raw = raw.detach().relu() if self.relu else raw.detach()
        raw, maps = finish_maps(raw, x.shape[-2:] if upsample else None, self.upsample_mode, self.normalize)
        return CamOutput(logits.detach(), chosen, scores, raw, maps, activations.detach())

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(target layer output as a leaf, logits), recording no graph for the parameters."""
        if self.fuse_batchnorm and not self.model.training:
            return self._folded()(x)  # a private copy with frozen parameters
        params = {k: v.detach() for k, v in self.model.named_parameters()}
        return functional_call(self._run, params, (x,), strict=False)

    def more_maps(self, output: CamOutput, images: Tensor, classes: Tensor) -> Tensor:
        """More classes' raw maps: the model runs again on ``images``."""
        return self(images, classes=classes, upsample=False).raw

    def maps_for(self, x: Tensor, activations: Tensor, logits: Tensor, targets: list[Target]) -> Tensor:
        """``Tensor[N, h, w]`` maps for one target per image."""
        if not self.needs_gradients:
            return self.combine(activations.float(), None, x, targets)
        score = torch.stack([t(logits[i]) for i, t in enumerate(targets)]).sum()
        (grads,) = torch.autograd.grad(score, activations, retain_graph=True)
        return self.combine(activations.detach().float(), grads.float(), x, targets)  # the maps in float32

    def combine(self, activations: Tensor, grads: Tensor | None, x: Tensor, targets: list[Target]) -> Tensor:
        """``Tensor[N, h, w]`` maps from the target layer's ``activations`` ``Tensor[N, C, h, w]``.

        ``grads`` (same shape) are the gradients of each image's target score, or None for a method
        that needs none; ``x`` is the model input and ``targets`` one target per image.
        """
        raise NotImplementedError


def weighted_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """``Tensor[N, h, w]``: channel weights ``Tensor[N, C]`` times activations ``Tensor[N, C, h, w]``, summed."""
    return torch.einsum("nc,nchw->nhw", weights, activations)


def _split(model: nn.Module, target_layer: str | None) -> tuple[fx.GraphModule, str]:
    """A traced copy of ``model``'s forward returning (target layer output as a leaf, logits)."""
    graph = trace_with_leaf(model, target_layer)
    modules = dict(model.named_modules())
    if target_layer is not None:
        nodes = [n for n in graph.nodes if n.op == "call_module" and n.target == target_layer]
        if not nodes:
            raise InvalidArgument(
                "target_layer",
                f"target layer {target_layer!r} is not a module of {type(model).__name__} called in forward",
            )
        node = nodes[-1]
    else:
        node = _default_target(graph, modules)
        if node is None:
            raise HeadNotFound(f"{type(model).__name__}: no spatial feature map found; name a target layer")
    output = output_node(graph)
    value = output.args[0]
    with graph.inserting_after(node):
        leaf = graph.call_function(_leaf, (node,))
    node.replace_all_uses_with(leaf, delete_user_cb=lambda user: user is not leaf)
    output.args = ((leaf, value),)
    name = node.target if node.op == "call_module" else node.name
    return fx.GraphModule(model, graph), str(name)


def _default_target(graph: fx.Graph, modules: dict[str, nn.Module]) -> fx.Node | None:
    """The tensor that is pooled globally or flattened first: the last spatial feature map."""
    for node in graph.nodes:
        flattens = (
            (node.op == "call_function" and node.target is torch.flatten)
            or (node.op == "call_method" and node.target in ("flatten", "view", "reshape"))
            or isinstance(module_of(node, modules), nn.Flatten)
        )
        if is_gap(node, modules) or flattens:
            source = node.args[0]
            # VGG-style heads pool to a fixed grid before flattening: explain the map before that pooling.
            if (
                isinstance(source, fx.Node)
                and source.op == "call_module"
                and isinstance(module_of(source, modules), nn.AdaptiveAvgPool2d)
            ):
                source = source.args[0]
            return source if isinstance(source, fx.Node) else None
    return None
