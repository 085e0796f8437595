"""Model adapter: split a classifier into its last spatial feature map and its GAP head.

The split is found statically (torch.fx symbolic tracing, or timm's ``forward_features`` /
``forward_head`` contract), so constructing an adapter runs no forward pass and leaves nothing on
the model. Only models whose ``forward`` cannot be traced fall back to a forward pre-hook on their
pooling module, and that hook lives only for the duration of one call.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn
from torch.fx.experimental.optimization import fuse as fuse_conv_bn

__all__ = ["CamAdapter", "HeadNotFound", "adapt"]


class HeadNotFound(ValueError):
    """The model does not end in global average pooling followed by a linear classifier."""


NO_HEAD_ADVICE = (
    "CAM needs a classifier that ends in global average pooling + one linear layer "
    "(ResNet, MobileNet, EfficientNet, DenseNet, ...). Convert the model with a GAP head "
    "(the paper's '-GAP' variants) or use a gradient method such as Grad-CAM."
)

# Ops that only reshape or are the identity at inference: they may sit between pooling and the
# linear layer without changing what CAM means.
_PASS_MODULES = (nn.Flatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
_PASS_FUNCTIONS = {torch.flatten, torch.squeeze, torch.reshape, F.dropout, operator.getitem}
_PASS_METHODS = {"flatten", "view", "reshape", "squeeze", "contiguous"}
_SHAPE_QUERIES = {"size", "dim"}


@dataclass(frozen=True)
class _Head:
    """Where the feature map is pooled and what turns the pooled vector into logits."""

    feature: fx.Node
    classifier: nn.Module | None  # nn.Linear or 1x1 nn.Conv2d when the head is linear


class CamAdapter:
    """Runs a classifier once and returns its last spatial feature map with its logits.

    ``weights(features, classes)`` gives the per-class channel weights ``w_k^c`` of CAM: the
    classifier's rows when the head is GAP + linear (exactly the paper), otherwise the gradient of
    the class score with respect to the pooled features, taken through the head alone.
    """

    def __init__(
        self,
        model: nn.Module,
        run: Callable[[Tensor], tuple[Tensor, Tensor]],
        classifier: nn.Module | None,
        head: Callable[[Tensor], Tensor] | None,
        description: str,
    ) -> None:
        self.model = model
        self._run = run
        self.classifier = classifier
        self._head = head
        self.description = description
        self.fuse_batchnorm = isinstance(run, fx.GraphModule)
        self._folded = FoldedCopy(run, model) if isinstance(run, fx.GraphModule) else None

    @property
    def is_linear(self) -> bool:
        return self.classifier is not None

    @property
    def weight(self) -> Tensor | None:
        """(classes, channels) classifier weights of a linear head, read live from the model."""
        if self.classifier is None:
            return None
        w = self.classifier.weight
        return w.reshape(w.shape[0], w.shape[1])

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features, logits = self._runner()(x)
        if features.ndim != 4:
            raise HeadNotFound(
                f"{type(self.model).__name__}: the pooled tensor has shape {tuple(features.shape)}, "
                f"not a spatial (N, C, H, W) feature map. {NO_HEAD_ADVICE}"
            )
        return features, logits

    def _runner(self) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
        """The traced forward with BatchNorm folded into the convolutions, when that is exact (eval mode)."""
        if not self.fuse_batchnorm or self.model.training or self._folded is None:
            return self._run
        return self._folded()

    def weights(self, features: Tensor, classes: Tensor) -> Tensor:
        """Channel weights (N, k, C) of the given classes (N, k) for each image."""
        if self.classifier is not None:
            return self.weight.detach()[classes]
        assert self._head is not None
        # A nonlinear head after GAP (MobileNetV3's MLP, ConvNeXt's LayerNorm): linearize it at
        # this image. Only the head is differentiated, never the backbone.
        with torch.inference_mode(False), torch.enable_grad():
            f = features.detach().clone().requires_grad_(True)
            logits = self._head(f)
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
        key = tuple((t.data_ptr(), t._version) for t in (*self.model.parameters(), *self.model.buffers()))
        if self._copy is None or key != self._key:
            self._copy = fuse_conv_bn(self.traced, inplace=False).requires_grad_(False)
            self._key = key
        return self._copy


def adapt(model: nn.Module) -> CamAdapter:
    """Find the feature map and the GAP head of ``model`` without running it."""
    if all(hasattr(model, a) for a in ("forward_features", "forward_head", "get_classifier")):
        return _adapt_timm(model)
    try:
        graph = _trace(model, model.forward)
    except Exception as err:  # noqa: BLE001 - any tracing failure means "use the fallback"
        return _adapt_by_hook(model, err)
    head = _find_head(graph, model)
    if head is None:
        raise HeadNotFound(
            f"{type(model).__name__} has no global-average-pooling + linear head. {NO_HEAD_ADVICE}"
        )
    output = _output_node(graph)
    value = output.args[0]
    if not isinstance(value, fx.Node):
        raise HeadNotFound(f"{type(model).__name__}.forward must return a single logits tensor")
    head_fn = None if head.classifier is not None else _extract_head(model, graph, head.feature, value)
    output.args = ((head.feature, value),)
    run = fx.GraphModule(model, graph)
    return CamAdapter(model, run, head.classifier, head_fn, _describe(model, head))


def _adapt_timm(model: nn.Module) -> CamAdapter:
    """timm models: ``forward_features`` gives the map, ``forward_head`` the logits."""

    def run(x: Tensor) -> tuple[Tensor, Tensor]:
        features = model.forward_features(x)
        return features, model.forward_head(features)

    classifier = None
    try:
        head = _find_head(_trace(model, model.forward_head), model)
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
    head_fn = None if classifier is not None else model.forward_head
    kind = "linear" if classifier is not None else "nonlinear (linearized by autograd)"
    return CamAdapter(model, run, classifier, head_fn, f"timm forward_features -> forward_head, {kind} head")


def _adapt_by_hook(model: nn.Module, trace_error: Exception) -> CamAdapter:
    """Untraceable models: catch the input of the last GAP module during the real forward."""
    pools = [m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d) and _is_global(m.output_size)]
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


def _trace(model: nn.Module, fn: Callable) -> fx.Graph:
    """Symbolically trace ``fn`` (a method of ``model``) as it runs in eval mode."""
    was_training = model.training
    model.eval()
    try:
        if fn == model.forward:
            return fx.Tracer().trace(model)
        wrapper = _MethodAsModule(model, fn.__name__)
        graph = fx.Tracer().trace(wrapper)
        _strip_prefix(graph, "model.")
        return graph
    finally:
        model.train(was_training)


class _LeafTracer(fx.Tracer):
    """Traces into every module except standard torch.nn ones and the one named ``leaf``."""

    def __init__(self, leaf: str | None) -> None:
        super().__init__()
        self.leaf = leaf

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname == self.leaf or super().is_leaf_module(m, qualname)


def _trace_with_leaf(model: nn.Module, leaf: str | None) -> fx.Graph:
    """Trace ``model.forward`` in eval mode keeping the module ``leaf`` as one call."""
    was_training = model.training
    model.eval()
    try:
        return _LeafTracer(leaf).trace(model)
    finally:
        model.train(was_training)


class _MethodAsModule(nn.Module):
    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self.model, self.method)(x)


def _strip_prefix(graph: fx.Graph, prefix: str) -> None:
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr") and node.target.startswith(prefix):
            node.target = node.target[len(prefix) :]


def _output_node(graph: fx.Graph) -> fx.Node:
    return next(n for n in reversed(graph.nodes) if n.op == "output")


def _find_head(graph: fx.Graph, root: nn.Module) -> _Head | None:
    """The last global average pooling whose result reaches the output, and what follows it."""
    modules = dict(root.named_modules())
    output = _output_node(graph)
    for node in reversed(list(graph.nodes)):
        if not _is_gap(node, modules):
            continue
        feature = node.args[0] if node.args else node.kwargs.get("input")
        if not isinstance(feature, fx.Node) or not _reaches(node, output):
            continue
        after = _follow_pass_through(node, modules)
        if after is not None and after.op == "call_module" and isinstance(modules[after.target], nn.Linear):
            if _follow_pass_through(after, modules) is _single_output_value(output):
                return _Head(feature, modules[after.target])
            return _Head(feature, None)
        conv_feature, conv = _class_conv_before(feature, modules)
        if conv is not None and _follow_pass_through(node, modules) is _single_output_value(output):
            return _Head(conv_feature, conv)  # SqueezeNet: 1x1 conv to classes, then GAP
        return _Head(feature, None)
    return None


def _single_output_value(output: fx.Node) -> fx.Node | None:
    value = output.args[0]
    return value if isinstance(value, fx.Node) else None


def _is_global(size: object) -> bool:
    return size in (1, (1, 1), [1, 1])


def _is_gap(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        m = modules.get(node.target)
        return isinstance(m, nn.AdaptiveAvgPool2d) and _is_global(m.output_size)
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return _is_global(size)
    is_mean = (node.op == "call_method" and node.target == "mean") or (
        node.op == "call_function" and node.target is torch.mean
    )
    if is_mean:
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if isinstance(dims, (tuple, list)):
            return sorted(dims) in ([2, 3], [-2, -1])
    return False


def _users(node: fx.Node) -> list[fx.Node]:
    """Users other than shape queries (``x.size(0)``, ``x.shape``)."""
    return [
        u
        for u in node.users
        if not (u.op == "call_method" and u.target in _SHAPE_QUERIES)
        and not (u.op == "call_function" and u.target is getattr and u.args[1:] == ("shape",))
    ]


def _is_pass_through(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), _PASS_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    return node.op == "call_method" and node.target in _PASS_METHODS


def _follow_pass_through(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node | None:
    """The first node after ``node`` that is not a reshape or dropout (single-user chain only)."""
    current = node
    while True:
        users = _users(current)
        if len(users) != 1:
            return None
        nxt = users[0]
        if nxt.op == "output" or not _is_pass_through(nxt, modules):
            return nxt if nxt.op != "output" else current
        current = nxt


def _class_conv_before(feature: fx.Node, modules: dict[str, nn.Module]) -> tuple[fx.Node, nn.Module | None]:
    """SqueezeNet's head: [dropout] -> 1x1 conv -> [ReLU] -> GAP. Returns the conv's input."""
    node = feature
    if _is_relu(node, modules):
        node = node.args[0]
    if node.op != "call_module" or not _is_class_conv(modules.get(node.target)):
        return feature, None
    conv = modules[node.target]
    source = node.args[0]
    while isinstance(source, fx.Node) and _is_pass_through(source, modules):
        source = source.args[0]
    return source, conv


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), nn.ReLU)
    return node.op == "call_function" and node.target in (F.relu, torch.relu)


def _is_class_conv(m: nn.Module | None) -> bool:
    return (
        isinstance(m, nn.Conv2d)
        and m.kernel_size == (1, 1)
        and m.stride == (1, 1)
        and m.groups == 1
        and m.padding in ((0, 0), "valid")
    )


def _reaches(node: fx.Node, target: fx.Node) -> bool:
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n is target:
            return True
        if n not in seen:
            seen.add(n)
            stack.extend(n.users)
    return False


def _extract_head(model: nn.Module, graph: fx.Graph, feature: fx.Node, value: fx.Node) -> Callable[[Tensor], Tensor]:
    """A module computing the logits from the feature map alone (the nodes between the two)."""
    needed: set[fx.Node] = set()
    stack = [value]
    while stack:
        n = stack.pop()
        if n is feature or n in needed:
            continue
        if n.op == "placeholder":
            raise HeadNotFound(
                f"{type(model).__name__}: the logits depend on more than the pooled feature map "
                f"(via {n.name}); the head cannot be separated. {NO_HEAD_ADVICE}"
            )
        needed.add(n)
        stack.extend(n.all_input_nodes)
    head_graph = fx.Graph()
    env = {feature: head_graph.placeholder("features")}
    for n in graph.nodes:
        if n in needed:
            env[n] = head_graph.node_copy(n, lambda a: env[a])
    head_graph.output(env[value])
    return fx.GraphModule(model, head_graph)


def _describe(model: nn.Module, head: _Head) -> str:
    if head.classifier is None:
        return f"{type(model).__name__}: features at fx node '{head.feature.name}', nonlinear head (linearized by autograd)"
    return f"{type(model).__name__}: features at fx node '{head.feature.name}', linear head {head.classifier}"
