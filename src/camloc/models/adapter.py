"""Model adapter: split a classifier into its last spatial feature map and its GAP head.

The split is found statically (torch.fx symbolic tracing, or timm's ``forward_features`` /
``forward_head`` contract), so constructing an adapter runs no forward pass and leaves nothing on
the model. Only models whose ``forward`` cannot be traced fall back to a forward pre-hook on their
pooling module, and that hook lives only for the duration of one call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.fx.experimental.optimization import fuse as fuse_conv_bn

from ..errors import HeadNotFound
from . import hf
from .graph import NO_HEAD_ADVICE, GapHead, extract_head, find_gap_head, is_global_size, output_node, trace
from .layout import grid_size, to_grid

__all__ = ["CamAdapter", "FoldedCopy", "adapt"]


class CamAdapter:
    """Runs a classifier once and returns its last spatial feature map with its logits.

    ``weights(features, classes)`` gives the per-class channel weights ``w_k^c`` of CAM: the
    classifier's rows when the head is GAP + linear (exactly the paper), otherwise the gradient of
    the class score with respect to the pooled features, taken through the head alone.

    ``fuse_batchnorm``: in eval mode, run a copy of a traced model with BatchNorm folded into the
    convolutions (only traced models have one to fold).
    """

    def __init__(
        self,
        model: nn.Module,
        run: Callable[[Tensor], tuple[Tensor, Tensor]],
        classifier: nn.Module | None,
        head: Callable[[Tensor], Tensor] | None,
        description: str,
        *,
        fuse_batchnorm: bool = True,
    ) -> None:
        self.model = model
        self._run = run
        self.classifier = classifier
        self._head = head
        self.description = description
        self.fuse_batchnorm = fuse_batchnorm and isinstance(run, fx.GraphModule)
        self._folded = FoldedCopy(run, model) if isinstance(run, fx.GraphModule) else None

    @property
    def is_linear(self) -> bool:
        """Whether the head after GAP is one linear layer (then CAM's weights are its rows)."""
        return self.classifier is not None

    @property
    def weight(self) -> Tensor | None:
        """(classes, channels) classifier weights of a linear head, read live from the model."""
        if self.classifier is None:
            return None
        w = self.classifier.weight
        assert isinstance(w, Tensor)
        return w.reshape(w.shape[0], w.shape[1])

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(features Tensor[N, C, h, w], logits Tensor[N, num_classes])`` of the input ``x``, in one forward pass.

        Raises:
            HeadNotFound: when the pooled tensor is not a spatial ``(N, C, H, W)`` feature map.
        """
        features, logits = self._runner()(x)
        if features.ndim != 4:
            raise HeadNotFound(
                f"{type(self.model).__name__}: the pooled tensor has shape {tuple(features.shape)}, "
                f"not a spatial (N, C, H, W) feature map. {NO_HEAD_ADVICE}"
            )
        channels = self.channels
        if (
            channels is not None and features.shape[1] != channels
        ):  # an NHWC map read as NCHW: refuse, never a wrong map
            raise HeadNotFound(
                f"{type(self.model).__name__}: the pooled tensor has shape {tuple(features.shape)}, but its head takes "
                f"{channels} channels: not an (N, C, H, W) feature map (channels-last, or tokens?). {NO_HEAD_ADVICE}"
            )
        return features, logits

    @property
    def channels(self) -> int | None:
        """The number of channels the head takes, where the model says it (linear classifier, timm's num_features)."""
        weight = self.weight
        if weight is not None:
            return int(weight.shape[1])
        features = getattr(self.model, "num_features", None)
        return features if isinstance(features, int) else None

    def _runner(self) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
        """The traced forward with BatchNorm folded into the convolutions, when that is exact (eval mode)."""
        if not self.fuse_batchnorm or self.model.training or self._folded is None:
            return self._run
        return self._folded()

    def weights(self, features: Tensor, classes: Tensor) -> Tensor:
        """Channel weights (N, k, C) of the given classes (N, k) for each image."""
        weight = self.weight
        if weight is not None:
            return weight.detach()[classes]
        assert self._head is not None
        # A nonlinear head after GAP (MobileNetV3's MLP, ConvNeXt's LayerNorm): linearize it at
        # this image. Only the head is differentiated, never the backbone.
        with torch.inference_mode(False), torch.enable_grad():
            f = features.detach().clone().requires_grad_(True)
            logits = self._head(f)
            if logits.ndim == 1:  # a single-logit head giving (N,)
                logits = logits[:, None]
            grads = []
            for j in range(classes.shape[1]):
                score = logits.gather(1, classes[:, j : j + 1].to(logits.device)).sum()
                (g,) = torch.autograd.grad(score, f, retain_graph=j + 1 < classes.shape[1])
                grads.append(g.sum(dim=(2, 3)))  # d score / d GAP(f)_k = sum_xy d score / d f_k(x,y)
        return torch.stack(grads, dim=1).to(features.dtype)


class FoldedCopy:
    """A copy of a traced model with BatchNorm folded into the convolutions, for inference.

    Folding is exact only in eval mode. The copy's parameters are frozen (it is never trained), and
    it is rebuilt whenever any parameter or buffer of the original model has been replaced or
    modified in place since it was made, so it never goes stale.
    """

    def __init__(self, traced: fx.GraphModule, model: nn.Module) -> None:
        self.traced = traced
        self.model = model
        self._copy: fx.GraphModule | None = None
        self._key: tuple = ()

    def __call__(self) -> fx.GraphModule:
        """The folded copy, rebuilt first when the model's parameters or buffers changed since the last call."""
        key = tuple((t.data_ptr(), t._version) for t in (*self.model.parameters(), *self.model.buffers()))
        if self._copy is None or key != self._key:
            # no_trace: tracing the traced graph again would bake the leaf's grad mode of this moment in
            folded = fuse_conv_bn(self.traced, inplace=False, no_trace=True)
            assert isinstance(folded, fx.GraphModule)
            self._copy = folded.requires_grad_(False)
            self._key = key
        return self._copy


def adapt(model: nn.Module, *, fuse_batchnorm: bool = True) -> CamAdapter:
    """Find the feature map and the GAP head of ``model`` without running it.

    ``fuse_batchnorm``: in eval mode, run a copy of the model with BatchNorm folded into the convolutions
    (where the model could be traced).
    """
    if hf.is_hf_model(model):
        if not hasattr(model, "timm_model"):
            return CamAdapter(model, *hf.cam_parts(model), fuse_batchnorm=False)
        model = getattr(model, "timm_model")  # noqa: B009 - transformers' TimmWrapper: the timm model inside
    if all(hasattr(model, a) for a in ("forward_features", "forward_head", "get_classifier")):
        return _adapt_timm_tokens(model) if _pools_patch_tokens(model) else _adapt_timm(model)
    try:
        graph = trace(model, model.forward)
    except Exception as err:  # noqa: BLE001 - any tracing failure means "use the fallback"
        return _adapt_by_hook(model, err)
    head = find_gap_head(graph, model)
    if head is None:
        raise HeadNotFound(f"{type(model).__name__} has no global-average-pooling + linear head. {NO_HEAD_ADVICE}")
    output = output_node(graph)
    value = output.args[0]
    if not isinstance(value, fx.Node):
        raise HeadNotFound(f"{type(model).__name__}.forward must return a single logits tensor")
    head_fn = None if head.classifier is not None else extract_head(model, graph, head.feature, value)
    output.args = ((head.feature, value),)
    run = fx.GraphModule(model, graph)
    return CamAdapter(model, run, head.classifier, head_fn, _describe(model, head), fuse_batchnorm=fuse_batchnorm)


def _adapt_timm(model: nn.Module) -> CamAdapter:
    """Timm models: ``forward_features`` gives the map, ``forward_head`` the logits.

    A model whose ``output_fmt`` is ``NHWC`` (Swin, Hiera-det, ...) gives its map channels last: it is
    turned to ``(N, C, H, W)`` for the maps, and back for the head. A model that averages all of its
    tokens (``global_pool='avg'`` and no class token: Twins, ...) gives tokens, laid out on their grid.
    """
    forward_features: Callable[[Tensor], Tensor] = getattr(model, "forward_features")  # noqa: B009 - typed here
    timm_head: Callable[[Tensor], Tensor] = getattr(model, "forward_head")  # noqa: B009 - typed here
    channels_last = getattr(model, "output_fmt", "NCHW") == "NHWC"
    pool = getattr(model, "global_pool", None)
    head_pool = getattr(getattr(model, "head", None), "pool_type", None)  # Hiera's ClNormMlpClassifierHead
    averages_tokens = (pool == "avg" or head_pool == "avg") and not getattr(model, "num_prefix_tokens", 0)
    owner = type(model).__name__
    seen_tokens = False

    def forward_head(features: Tensor) -> Tensor:  # features: (N, C, H, W)
        if seen_tokens:
            return timm_head(features.flatten(2).transpose(1, 2))
        return timm_head(features.permute(0, 2, 3, 1) if channels_last else features)

    def run(x: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal seen_tokens
        features = forward_features(x)
        if not isinstance(features, Tensor):  # CrossViT's branches, CoaT's serial + parallel outputs
            raise HeadNotFound(
                f"{owner}: forward_features gives a {type(features).__name__} of tensors, not one feature map. "
                f"{NO_HEAD_ADVICE}"
            )
        logits = timm_head(features)
        if channels_last and features.ndim == 4:
            features = features.permute(0, 3, 1, 2)
        elif averages_tokens and features.ndim == 3:
            channels = getattr(model, "num_features", None)
            features = to_grid(features, (x.shape[-2], x.shape[-1]), channels=channels, prefix=0, owner=owner)
            seen_tokens = True
        return features, logits

    classifier = None
    try:
        head = None if channels_last else find_gap_head(trace(model, timm_head), model)
    except Exception:  # noqa: BLE001 - an untraceable head is linearized by autograd instead
        head = None
    if head is not None and head.feature.op != "placeholder":
        head = None  # pooling found, but not of forward_head's input
    if head is None:
        pool = getattr(model, "global_pool", None) or getattr(getattr(model, "head", None), "global_pool", None)
        pool_type = getattr(pool, "pool_type", "avg")
        if pool_type not in ("avg", "fast", "fastavg"):
            raise HeadNotFound(
                f"timm model {type(model).__name__} pools with {pool_type!r}, not average pooling. "
                f"Create it with global_pool='avg'. {NO_HEAD_ADVICE}"
            )
    else:
        classifier = head.classifier
    head_fn = None if classifier is not None else forward_head
    kind = "linear" if classifier is not None else "nonlinear (linearized by autograd)"
    return CamAdapter(model, run, classifier, head_fn, f"timm forward_features -> forward_head, {kind} head")


def _pools_patch_tokens(model: nn.Module) -> bool:
    """A timm vision transformer (ViT, DeiT, ...) whose head averages its patch tokens, prefix tokens left out."""
    return (
        hasattr(model, "patch_embed")
        and isinstance(getattr(model, "num_prefix_tokens", None), int)
        and getattr(model, "global_pool", None) == "avg"
        and getattr(model, "attn_pool", None) is None
        and not getattr(model, "pool_include_prefix", False)
    )


def _adapt_timm_tokens(model: nn.Module) -> CamAdapter:
    """Timm transformers that average patch tokens: the tokens laid out on the patch grid are the feature map.

    ``forward_features`` gives ``(N, prefix + h * w, C)`` tokens (class and register tokens first);
    the patch tokens, in row-major order, become ``(N, C, h, w)`` with ``h, w`` the input's size over
    the patch size. The head (pooling, ``fc_norm``, classifier) is linearized through autograd: exact
    where ``fc_norm`` is the identity, the documented linearization where it is a LayerNorm.
    """
    forward_features: Callable[[Tensor], Tensor] = getattr(model, "forward_features")  # noqa: B009 - typed here
    timm_head: Callable[[Tensor], Tensor] = getattr(model, "forward_head")  # noqa: B009 - typed here
    prefix: int = getattr(model, "num_prefix_tokens")  # noqa: B009 - checked by _pools_patch_tokens
    patch = getattr(getattr(model, "patch_embed"), "patch_size", None)  # noqa: B009 - MViTv2 has none
    patch_size = (patch, patch) if isinstance(patch, int) else tuple(patch) if patch is not None else None

    def run(x: Tensor) -> tuple[Tensor, Tensor]:
        tokens = forward_features(x)
        n, count, channels = tokens.shape
        input_size = (x.shape[-2], x.shape[-1])
        # The patch size where it gives the grid; a hybrid's stem strides further (ViTamin: 1-pixel "patches")
        size = grid_size(count - prefix, input_size, patch_size) or grid_size(count - prefix, input_size)
        if size is None:
            raise HeadNotFound(
                f"{type(model).__name__}: {count - prefix} patch tokens make no grid of the {input_size} input"
            )
        grid = tokens[:, prefix:].transpose(1, 2).reshape(n, channels, *size)
        return grid, timm_head(tokens)

    def forward_head(features: Tensor) -> Tensor:  # (N, C, h, w); the prefix tokens are not pooled: zeros
        patches = features.flatten(2).transpose(1, 2)
        return timm_head(torch.cat([patches.new_zeros(len(patches), prefix, patches.shape[2]), patches], dim=1))

    return CamAdapter(model, run, None, forward_head, "timm patch tokens on their grid -> forward_head (linearized)")


def _adapt_by_hook(model: nn.Module, trace_error: Exception) -> CamAdapter:
    """Untraceable models: catch the input of the last GAP module during the real forward."""
    pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d) and is_global_size(m.output_size)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not pools or not linears:
        raise HeadNotFound(
            f"{type(model).__name__} could not be traced by torch.fx ({type(trace_error).__name__}: "
            f"{trace_error}) and has no nn.AdaptiveAvgPool2d(1) + nn.Linear modules to fall back on. "
            f"{NO_HEAD_ADVICE}"
        )
    pool, linear = pools[-1], linears[-1]

    def run(x: Tensor) -> tuple[Tensor, Tensor]:
        captured: list[Tensor] = []
        with _pre_hook(pool, lambda _m, args: captured.append(args[0])):
            logits = model(x)
        if not captured:
            raise HeadNotFound(f"{type(model).__name__}: the pooling module was not called in forward")
        return captured[-1], logits

    return CamAdapter(model, run, linear, None, "forward pre-hook on the last AdaptiveAvgPool2d(1), last nn.Linear")


@contextlib.contextmanager
def _pre_hook(module: nn.Module, hook: Callable) -> Iterator[None]:
    handle = module.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _describe(model: nn.Module, head: GapHead) -> str:
    if head.classifier is None:
        return (
            f"{type(model).__name__}: features at fx node '{head.feature.name}', "
            "nonlinear head (linearized by autograd)"
        )
    return f"{type(model).__name__}: features at fx node '{head.feature.name}', linear head {head.classifier}"
