"""The base of the Grad-CAM family: any target layer, any layout, batched, on the model's device, no numpy.

Each method is a small ``combine(activations, gradients, ...) -> maps`` on one base,
:class:`TracedMethod`. The target layer's output is made a leaf of the autograd graph: gradients
flow only from the scores down to that layer (never further, never into the parameters, which are
passed detached), and no hook is left on the model. Two ways cut the graph there:

- torch.fx: the model is traced once and the layer's output wrapped in a leaf (models without a
  declared layer, and layers named by the user);
- a forward hook (:mod:`camloc.maps.hooked`) that lives for one call: for the layer a model declares
  (timm's ``feature_info``, ``camloc_feature_layer()`` as Hugging Face classifiers declare it through
  :func:`camloc.models.hf.as_classifier`, see :mod:`camloc.models.layers`) and for
  models torch.fx cannot trace (control flow on tensors, ``len``). A ``TraceError`` never reaches
  the user.

The layer's output and its gradients are taken in the layer's own layout (``(N, C, h, w)``,
channels last ``(N, h, w, C)``, tokens ``(N, L, C)`` after class or register tokens) and read as
``(N, C, h, w)`` by :class:`~camloc.models.layout.Layout` before ``combine``: ViT, Swin or ConvNeXt
need no reshape_transform.
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import HeadNotFound, InvalidArgument, did_you_mean
from ..models.adapter import FoldedCopy
from ..models.graph import is_gap, module_of, output_node, trace_with_leaf
from ..models.hf import as_classifier
from ..models.layers import default_target, layer_layout
from ..models.layout import Layout
from ..utils import model_device
from .core import (
    CamOutput,
    Classes,
    ClassTarget,
    Normalize,
    Target,
    Targets,
    autocast,
    check_amp,
    choose_classes,
    finish_maps,
    output_tensor,
    prepare_input,
    score_targets,
    split_targets,
    target_score,
)
from .hooked import HookedForward
from .hooked import leaf as cut_leaf

__all__ = ["ClassTarget", "Target", "TracedMethod", "weighted_sum"]  # the targets live in core; kept here too


class TracedMethod:
    """Base of the traced methods: runs the model once, returning the target layer's output as a leaf.

    A subclass sets ``name`` and ``needs_gradients`` and implements :meth:`combine`.

    Args:
        model: the classifier.
        target_layer: the module whose output is explained: its qualified name (``"layer4"``,
            ``"features.16"``) or the module itself (``model.layer4``); default: the last spatial
            stage, as the model declares it (:func:`camloc.models.layers.default_target`: timm's
            ``feature_info``, ``camloc_feature_layer()``), else the tensor that is pooled globally
            last or, without global pooling, flattened first. The method's ``target_layer``
            attribute holds the name, ``layout`` how its output is read as ``(N, C, h, w)``.
        relu: apply a ReLU to the maps (as the methods' papers do).
        normalize: ``"none"``, ``"minmax"`` or ``"max"``, applied to ``raw`` and to ``maps`` separately.
        upsample_mode: ``F.interpolate`` mode for ``maps``.
        channels_last: run the model on channels_last input (default: on the CPU only, where it is faster).
        fuse_batchnorm: in eval mode, run a copy of the model with BatchNorm folded into the
            convolutions (exact, and faster); False runs the model's own modules.
        amp: ``"bf16"`` or ``"fp16"``: the forward pass under ``torch.autocast`` in that type, the
            maps combined in float32 (None: all in float32).

    Constructing a method traces the model (unless it declares its layer); it runs nothing and
    attaches nothing to the model. Models run through a hook run their own modules
    (``fuse_batchnorm`` does not apply to them).
    """

    name = "base"
    needs_gradients = True
    reuses_forward = False

    def __init__(
        self,
        model: nn.Module,
        target_layer: str | nn.Module | None = None,
        *,
        relu: bool = True,
        normalize: Normalize = "none",
        upsample_mode: str = "bilinear",
        channels_last: bool | None = None,
        fuse_batchnorm: bool = True,
        amp: str | None = None,
    ) -> None:
        self.model = model
        self.amp = check_amp(amp)
        self.relu = relu
        self.normalize = normalize
        self.upsample_mode = upsample_mode
        # a transformers classifier runs as the same model seen as a plain one (logits, declared layer)
        self._run, self.target_layer, self.layout = _split(as_classifier(model), target_layer)
        self._folded = FoldedCopy(self._run, model) if isinstance(self._run, fx.GraphModule) else None
        self.fuse_batchnorm = fuse_batchnorm
        self.channels_last = channels_last

    @property
    def device(self) -> torch.device:
        """The model's device, where the maps are computed."""
        return model_device(self.model)

    def __call__(
        self,
        images: Tensor,
        topk: int = 1,
        classes: Classes | None = None,
        *,
        targets: Targets | None = None,
        upsample: bool = True,
    ) -> CamOutput:
        """Maps of the top-k classes, of ``classes``, or of ``targets`` (callables on each image's output).

        Args:
            images: ``Tensor[N, 3, H, W]`` normalized model input.
            topk: how many of the best classes, when neither ``classes`` nor ``targets`` is given.
            classes: one index for every image, one index per image, or an equal-length list per image.
            targets: instead of ``classes``: one target for every image, or per image one target or an
                equal-length list of them, each a class (an int, a :class:`~camloc.maps.ClassTarget`,
                pytorch-grad-cam's ``ClassifierOutputTarget``) or any callable mapping the image's output
                (``Tensor[num_classes]``, ``Tensor[K, h, w]`` for a segmentation model) to a scalar
                score: :class:`~camloc.maps.ClassesTarget`, :class:`~camloc.maps.NegativeTarget`,
                :class:`~camloc.maps.SegmentationTarget`, pytorch-grad-cam's targets.
            upsample: also give the maps upsampled to ``(H, W)``.

        Returns:
            :class:`~camloc.maps.CamOutput`. Targets that are all classes give what ``classes=``
            gives; otherwise ``classes`` is -1 for the callables and ``scores`` holds each target's score.
            The model's output is read by :func:`~camloc.maps.core.output_tensor` (a tensor, a dict's
            ``"out"``, ``.logits``); a segmentation model's has no top-k classes: it needs ``targets``.
        """
        classes, custom = split_targets(targets, classes, images.shape[0])
        x = prepare_input(images, self.device, self.channels_last)
        with torch.enable_grad() if self.needs_gradients else torch.no_grad():
            with autocast(x.device, self.amp):
                activations, output = self._forward(x)
            logits = output_tensor(output).float()  # scores and gradients of the scores in float32
            if custom is None:
                chosen, scores = choose_classes(logits, topk, classes)
                calls: list[list[Target]] = [[ClassTarget(c) for c in row] for row in chosen.tolist()]
            else:
                chosen, scores, calls = score_targets(custom, logits)
            raw = torch.stack(
                [self.maps_for(x, activations, logits, [ts[j] for ts in calls]) for j in range(len(calls[0]))],
                dim=1,
            )
        raw = raw.detach().relu() if self.relu else raw.detach()
        raw, maps = finish_maps(raw, x.shape[-2:] if upsample else None, self.upsample_mode, self.normalize)
        return CamOutput(logits.detach(), chosen, scores, raw, maps, self._grid(activations.detach(), x))

    def class_scores(self, images: Tensor) -> Tensor:
        """``Tensor[N, num_classes]`` float32 scores for ``images``: the forward pass of the maps, without maps."""
        x = prepare_input(images, self.device, self.channels_last)
        with torch.no_grad(), autocast(x.device, self.amp):
            _, output = self._forward(x)
        return output_tensor(output).float()

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(target layer output as a leaf, in its own layout; logits), recording no graph for the parameters."""
        if isinstance(self._run, HookedForward):
            return self._run(x)  # it passes the parameters detached itself
        if self._folded is not None and self.fuse_batchnorm and not self.model.training:
            return self._folded()(x)  # a private copy with frozen parameters
        params = {k: v.detach() for k, v in self.model.named_parameters()}
        return functional_call(self._run, params, (x,), strict=False)

    def _grid(self, t: Tensor, x: Tensor) -> Tensor:
        """The target layer's output (or its gradient) ``t`` as ``Tensor[N, C, h, w]``."""
        owner = f"{type(self.model).__name__}.{self.target_layer}"
        return self.layout.to_grid(t, (x.shape[-2], x.shape[-1]), owner=owner)

    def more_maps(self, output: CamOutput, images: Tensor, classes: Tensor) -> Tensor:
        """More classes' raw maps: the model runs again on ``images``."""
        return self(images, classes=classes, upsample=False).raw

    def maps_for(self, x: Tensor, activations: Tensor, logits: Tensor, targets: list[Target]) -> Tensor:
        """``Tensor[N, h, w]`` maps for one target per image; ``activations``: the layer's output in its own layout."""
        if not self.needs_gradients:
            return self.combine(self._grid(activations.float(), x), None, x, targets)
        score = torch.stack([target_score(t, logits[i]) for i, t in enumerate(targets)]).sum()
        grads = self._gradient(score, activations)
        grids = self._grid(activations.detach().float(), x), self._grid(grads.float(), x)
        return self.combine(*grids, x, targets)  # the maps in float32

    def _gradient(self, score: Tensor, activations: Tensor) -> Tensor:
        """``d score / d activations``, or a one-line error when the score does not depend on the layer."""
        grads = None
        if score.requires_grad:
            (grads,) = torch.autograd.grad(score, activations, retain_graph=True, allow_unused=True)
        if grads is None:
            raise HeadNotFound(
                f"{type(self.model).__name__}: the scores do not depend on the output of "
                f"target_layer={self.target_layer!r}; name a layer on the way to the output"
            )
        return grads

    def combine(self, activations: Tensor, grads: Tensor | None, x: Tensor, targets: list[Target]) -> Tensor:
        """``Tensor[N, h, w]`` maps from the target layer's ``activations`` ``Tensor[N, C, h, w]``.

        ``grads`` (same shape) are the gradients of each image's target score, or None for a method
        that needs none; ``x`` is the model input and ``targets`` one target per image.
        """
        raise NotImplementedError


def weighted_sum(weights: Tensor, activations: Tensor) -> Tensor:
    """``Tensor[N, h, w]``: channel weights ``Tensor[N, C]`` times activations ``Tensor[N, C, h, w]``, summed."""
    return torch.einsum("nc,nchw->nhw", weights, activations)


def layer_name(model: nn.Module, layer: str | nn.Module | None) -> str | None:
    """The qualified name of ``layer`` in ``model`` when it is given as a module; a name or None as it is."""
    if layer is None or isinstance(layer, str):
        return layer
    if not isinstance(layer, nn.Module):
        raise InvalidArgument(
            "target_layer",
            f"target_layer= must be a module's name or the module, not {type(layer).__name__}",
            arguments=["target_layer"],
        )
    name = next((n for n, m in model.named_modules() if m is layer and n), None)
    if name is None:
        raise InvalidArgument(
            "target_layer",
            f"target_layer=: the {type(layer).__name__} given is not a module of this {type(model).__name__}",
            arguments=["target_layer"],
        )
    return name


def _split(
    model: nn.Module, target_layer: str | nn.Module | None
) -> tuple[fx.GraphModule | HookedForward, str, Layout]:
    """``(run, name, layout)``: ``run(x)`` gives (the target layer's output as a leaf, logits).

    A layer the model declares runs through a hook; any other is cut in a traced copy of
    ``model``'s forward, or through a hook when torch.fx cannot trace it.
    """
    name = layer_name(model, target_layer)
    if name is None:
        declared = default_target(model)
        if declared is not None:
            name, layout = declared
            return HookedForward(model, name, layout.channels), name, layout
    try:
        graph = trace_with_leaf(model, name)
    except Exception as err:  # noqa: BLE001 - control flow on tensors, len(), Proxy arguments: hook instead
        if name is None:
            raise HeadNotFound(
                f"{type(model).__name__} cannot be traced by torch.fx ({type(err).__name__}) to find its last feature "
                "map; name it with target_layer="
            ) from None
        _check_module(model, name, sorted(n for n, _ in model.named_modules() if n))
        layout = layer_layout(model, name)
        return HookedForward(model, name, layout.channels), name, layout
    modules = dict(model.named_modules())
    if name is not None:
        nodes = [n for n in graph.nodes if n.op == "call_module" and n.target == name]
        if not nodes:
            called = sorted({str(n.target) for n in graph.nodes if n.op == "call_module"})
            _check_module(model, name, called)
        node = nodes[-1]
    else:
        node = _default_target(graph, modules)
        if node is None:
            raise HeadNotFound(f"{type(model).__name__}: no spatial feature map found; name a target layer")
    output = output_node(graph)
    value = output.args[0]
    with graph.inserting_after(node):
        leaf = graph.call_function(cut_leaf, (node,))
    node.replace_all_uses_with(leaf, delete_user_cb=lambda user: user is not leaf)
    output.args = ((leaf, value),)
    if node.op == "call_module":
        return fx.GraphModule(model, graph), str(node.target), layer_layout(model, str(node.target))
    return fx.GraphModule(model, graph), node.name, Layout()


def _check_module(model: nn.Module, name: str, called: list[str]) -> None:
    """Refuse a target layer that is not among the modules ``called`` in forward."""
    if name not in called:
        raise InvalidArgument(
            "target_layer",
            f"target_layer={name!r}: not a module of {type(model).__name__} called in forward"
            + did_you_mean(name, called),
            arguments=["target_layer"],
        )


def _default_target(graph: fx.Graph, modules: dict[str, nn.Module]) -> fx.Node | None:
    """The last spatial feature map: the tensor pooled globally last, or else flattened first.

    The last global pooling is the head's (squeeze-and-excitation blocks pool globally before it);
    a model without global pooling (VGG) flattens its last map first.
    """
    nodes = list(graph.nodes)
    pools = [n for n in nodes if is_gap(n, modules)]
    for node in pools[-1:] or nodes:
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
