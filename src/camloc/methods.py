"""The Grad-CAM family on one base: any target layer, batched, on the model's device, no numpy.

Each method is a small ``combine(activations, gradients) -> maps`` on one base, ``ActivationMethod``. The model is traced once with torch.fx and the target layer's output is made a
leaf of the autograd graph: gradients flow only from the scores down to that layer (never further,
never into the parameters, which are passed detached), and no hook is left on the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from .adapter import FoldedCopy, HeadNotFound, _is_gap, _output_node, _trace_with_leaf
from .maps import CamOutput, Classes, Normalize, choose_classes, finish_maps, model_device, prepare_input

__all__ = [
    "ActivationMethod",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "METHODS",
    "ScoreCAM",
    "XGradCAM",
    "ClassTarget",
]

Target = Callable[[Tensor], Tensor]  # one image's model output -> a scalar score


class ClassTarget:
    """The logit of one class: the default target."""

    def __init__(self, index: int) -> None:
        self.index = int(index)

    def __call__(self, output: Tensor) -> Tensor:
        return output[..., self.index]


def _leaf(t: Tensor) -> Tensor:
    """Cut the autograd graph here: the target layer's output becomes a leaf that wants gradients."""
    return t.detach().requires_grad_(torch.is_grad_enabled())


fx.wrap("_leaf")


class ActivationMethod:
    """Base of the methods: runs the model once, returning the target layer's output as a leaf."""

    name = "base"
    needs_gradients = True

    def __init__(
        self,
        model: nn.Module,
        target_layer: str | None = None,
        *,
        relu: bool = True,
        normalize: Normalize = "none",
        upsample_mode: str = "bilinear",
    ) -> None:
        self.model = model
        self.relu = relu
        self.normalize = normalize
        self.upsample_mode = upsample_mode
        self._run, self.target_layer = _split(model, target_layer)
        self._folded = FoldedCopy(self._run, model)
        self.fuse_batchnorm = True
        self.channels_last: bool | None = None  # None: on the CPU

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def __call__(
        self,
        images: Tensor,
        topk: int = 1,
        classes: Classes | None = None,
        targets: Sequence[Target] | Sequence[Sequence[Target]] | None = None,
        upsample: bool = True,
    ) -> CamOutput:
        """Maps of the top-k classes, of ``classes``, or of ``targets`` (callables on each image's output)."""
        x = prepare_input(images, self.device, self.channels_last)
        with torch.enable_grad() if self.needs_gradients else torch.no_grad():
            activations, logits = self._forward(x)
            if targets is None:
                chosen, scores = choose_classes(logits, topk, classes)
                target_lists = [[ClassTarget(c) for c in row] for row in chosen.tolist()]
            else:
                target_lists = [list(t) if isinstance(t, (list, tuple)) else [t] for t in targets]
                chosen = torch.full((len(target_lists), len(target_lists[0])), -1, device=logits.device)
                scores = torch.stack([torch.stack([t(logits[i]).detach().float() for t in ts]) for i, ts in enumerate(target_lists)])
            raw = torch.stack(
                [self.maps_for(x, activations, logits, [ts[j] for ts in target_lists]) for j in range(len(target_lists[0]))],
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

    def maps_for(self, x: Tensor, activations: Tensor, logits: Tensor, targets: list[Target]) -> Tensor:
        """(N, h, w) maps for one target per image."""
        if not self.needs_gradients:
            return self.combine(activations, None, x, targets)
        score = torch.stack([t(logits[i]) for i, t in enumerate(targets)]).sum()
        (grads,) = torch.autograd.grad(score, activations, retain_graph=True)
        return self.combine(activations.detach(), grads, x, targets)

    def combine(self, activations: Tensor, grads: Tensor | None, x: Tensor, targets: list[Target]) -> Tensor:
        raise NotImplementedError


def _weighted(weights: Tensor, activations: Tensor) -> Tensor:
    return torch.einsum("nc,nchw->nhw", weights, activations)


class GradCAM(ActivationMethod):
    """Selvaraju et al. (ICCV 2017): channel weights = spatial mean of the gradients."""

    name = "gradcam"

    def combine(self, activations, grads, x, targets):
        return _weighted(grads.mean(dim=(2, 3)), activations)


class GradCAMPlusPlus(ActivationMethod):
    """Chattopadhyay et al. (WACV 2018), eq. 19 with the exponential trick: higher powers of the gradient."""

    name = "gradcam++"

    def combine(self, activations, grads, x, targets):
        g2 = grads.pow(2)
        g3 = g2 * grads
        total = activations.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + total * g3 + 1e-6)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return _weighted((grads.relu() * alpha).sum(dim=(2, 3)), activations)


class XGradCAM(ActivationMethod):
    """Fu et al. (BMVC 2020): gradients weighted by the normalized activations."""

    name = "xgradcam"

    def combine(self, activations, grads, x, targets):
        total = activations.sum(dim=(2, 3), keepdim=True)
        return _weighted((grads * activations / (total + 1e-7)).sum(dim=(2, 3)), activations)


class HiResCAM(ActivationMethod):
    """Draelos & Carin (2020): element-wise gradient x activation, summed over channels."""

    name = "hirescam"

    def combine(self, activations, grads, x, targets):
        return (grads * activations).sum(dim=1)


class LayerCAM(ActivationMethod):
    """Jiang et al. (TIP 2021): positive gradients as per-location weights."""

    name = "layercam"

    def combine(self, activations, grads, x, targets):
        return (grads.relu() * activations).sum(dim=1)


class EigenCAM(ActivationMethod):
    """Muhammad & Yahya (IJCNN 2020): the activations projected on their first principal component."""

    name = "eigencam"
    needs_gradients = False

    def combine(self, activations, grads, x, targets):
        n, c, h, w = activations.shape
        flat = activations.float().reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
        centred = flat - flat.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        return (centred @ vh[:, 0, :, None]).reshape(n, h, w).to(activations.dtype)


class ScoreCAM(ActivationMethod):
    """Wang et al. (CVPRW 2020): each channel, upsampled and min-max normalized, masks the input;
    the softmax over channels of the masked inputs' target scores weights the channels."""

    name = "scorecam"
    needs_gradients = False

    def __init__(self, *args, chunk: int = 64, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.chunk = chunk

    def combine(self, activations, grads, x, targets):
        n, c = activations.shape[:2]
        weights = torch.empty(n, c, device=x.device)
        with torch.no_grad():
            for i in range(n):
                for start in range(0, c, self.chunk):
                    # Upsample and normalize one chunk of channels at a time: memory stays at chunk size.
                    up = F.interpolate(activations[i : i + 1, start : start + self.chunk], size=x.shape[-2:], mode="bilinear", align_corners=True)[0]
                    flat = up.flatten(1)
                    lo, hi = flat.amin(-1)[:, None, None], flat.amax(-1)[:, None, None]
                    masks = ((up - lo) / (hi - lo + 1e-8))[:, None]  # (k, 1, H, W)
                    _, out = self._forward(x[i : i + 1] * masks)
                    weights[i, start : start + self.chunk] = torch.stack([targets[i](o) for o in out]).float()
        return _weighted(weights.softmax(dim=1).to(activations.dtype), activations)


METHODS: dict[str, type[ActivationMethod]] = {
    m.name: m for m in (GradCAM, GradCAMPlusPlus, XGradCAM, HiResCAM, LayerCAM, ScoreCAM, EigenCAM)
}


def _split(model: nn.Module, target_layer: str | None) -> tuple[fx.GraphModule, str]:
    """A traced copy of ``model``'s forward returning (target layer output as a leaf, logits)."""
    graph = _trace_with_leaf(model, target_layer)
    modules = dict(model.named_modules())
    if target_layer is not None:
        nodes = [n for n in graph.nodes if n.op == "call_module" and n.target == target_layer]
        if not nodes:
            raise ValueError(f"target layer {target_layer!r} is not a module of {type(model).__name__} called in forward")
        node = nodes[-1]
    else:
        node = _default_target(graph, modules)
        if node is None:
            raise HeadNotFound(f"{type(model).__name__}: no spatial feature map found; name a target layer")
    output = _output_node(graph)
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
        flattens = (node.op == "call_function" and node.target is torch.flatten) or (
            node.op == "call_method" and node.target in ("flatten", "view", "reshape")
        ) or (node.op == "call_module" and isinstance(modules.get(node.target), nn.Flatten))
        if _is_gap(node, modules) or flattens:
            source = node.args[0]
            # VGG-style heads pool to a fixed grid before flattening: explain the map before that pooling.
            if isinstance(source, fx.Node) and source.op == "call_module" and isinstance(modules.get(source.target), nn.AdaptiveAvgPool2d):
                source = source.args[0]
            return source if isinstance(source, fx.Node) else None
    return None
