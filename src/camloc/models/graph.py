"""torch.fx helpers: trace a model statically, and find where it pools its last feature map.

Used by the CAM adapter (which splits a model into feature map + GAP head) and by the traced map
methods (which cut the autograd graph at a target layer). Nothing here runs the model.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import HeadNotFound

__all__ = [
    "NO_HEAD_ADVICE",
    "GapHead",
    "extract_head",
    "find_gap_head",
    "is_gap",
    "is_global_size",
    "module_of",
    "output_node",
    "split_at",
    "trace",
    "trace_with_leaf",
]

NO_HEAD_ADVICE = (
    "CAM needs a classifier that ends in global average pooling + one linear layer "
    "(ResNet, MobileNet, EfficientNet, DenseNet, ...). Convert the model with a GAP head "
    "(the paper's '-GAP' variants) or use a gradient method such as Grad-CAM."
)

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
class GapHead:
    """Where the feature map is pooled and what turns the pooled vector into logits."""

    feature: fx.Node
    classifier: nn.Module | None  # nn.Linear or 1x1 nn.Conv2d when the head is linear


def trace(model: nn.Module, fn: Callable) -> fx.Graph:
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
    """Traces into every module except standard torch.nn ones and those named in ``leaves``."""

    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)


def trace_with_leaf(model: nn.Module, *leaves: str | None) -> fx.Graph:
    """Trace ``model.forward`` in eval mode keeping each module named in ``leaves`` as one call (None: none)."""
    was_training = model.training
    model.eval()
    try:
        return _LeafTracer({name for name in leaves if name is not None}).trace(model)
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


def output_node(graph: fx.Graph) -> fx.Node:
    """The graph's (last) ``output`` node."""
    return next(n for n in reversed(graph.nodes) if n.op == "output")


def find_gap_head(graph: fx.Graph, root: nn.Module) -> GapHead | None:
    """The last global average pooling whose result reaches the output, and what follows it."""
    modules = dict(root.named_modules())
    output = output_node(graph)
    for node in reversed(list(graph.nodes)):
        if not is_gap(node, modules):
            continue
        feature = node.args[0] if node.args else node.kwargs.get("input")
        if not isinstance(feature, fx.Node) or not _reaches(node, output):
            continue
        after = _follow_pass_through(node, modules)
        linear = None if after is None else module_of(after, modules)
        if after is not None and isinstance(linear, nn.Linear):
            if _follow_pass_through(after, modules) is _single_output_value(output):
                return GapHead(feature, linear)
            return GapHead(feature, None)
        conv_feature, conv = _class_conv_before(feature, modules)
        if conv is not None and _follow_pass_through(node, modules) is _single_output_value(output):
            return GapHead(conv_feature, conv)  # SqueezeNet: 1x1 conv to classes, then GAP
        return GapHead(feature, None)
    return None


def _single_output_value(output: fx.Node) -> fx.Node | None:
    value = output.args[0]
    return value if isinstance(value, fx.Node) else None


def is_global_size(size: object) -> bool:
    """Whether an adaptive pooling ``output_size`` is 1 x 1 (``1``, ``(1, 1)`` or ``[1, 1]``)."""
    return size in (1, (1, 1), [1, 1])


def is_gap(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` is a global average pooling.

    That is an ``nn.AdaptiveAvgPool2d`` module or ``F.adaptive_avg_pool2d`` call of output size 1 x 1,
    or a ``mean`` over the dimensions ``(2, 3)`` / ``(-2, -1)`` (method or ``torch.mean``).

    Args:
        node: a node of a traced graph.
        modules: the traced model's ``named_modules()``, to resolve ``call_module`` targets.
    """
    if node.op == "call_module":
        m = module_of(node, modules)
        return isinstance(m, nn.AdaptiveAvgPool2d) and is_global_size(m.output_size)
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return is_global_size(size)
    is_mean = (node.op == "call_method" and node.target == "mean") or (
        node.op == "call_function" and node.target is torch.mean
    )
    if is_mean:
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if isinstance(dims, (tuple, list)):
            return sorted(dims) in ([2, 3], [-2, -1])
    return False


def module_of(node: fx.Node, modules: dict[str, nn.Module]) -> nn.Module | None:
    """The module a ``call_module`` node calls (None for any other node)."""
    return modules.get(node.target) if node.op == "call_module" and isinstance(node.target, str) else None


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
        return isinstance(module_of(node, modules), _PASS_MODULES)
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
        node = cast(fx.Node, node.args[0])
    conv = module_of(node, modules)
    if conv is None or not _is_class_conv(conv):
        return feature, None
    source = node.args[0]
    while isinstance(source, fx.Node) and _is_pass_through(source, modules):
        source = source.args[0]
    return cast(fx.Node, source), conv


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(module_of(node, modules), nn.ReLU)
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


def extract_head(model: nn.Module, graph: fx.Graph, feature: fx.Node, value: fx.Node) -> fx.GraphModule:
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


def split_at(model: nn.Module, layer: str) -> tuple[fx.GraphModule, fx.GraphModule]:
    """``(first, rest)``: the part of ``model`` up to module ``layer``'s output, and the part after it.

    ``rest(first(x))`` computes ``model(x)`` (traced in eval mode); both share ``model``'s modules
    and parameters, so training ``rest`` trains ``model``. ``layer`` must be a cut that one tensor
    crosses (a stage of a sequential backbone), not a block that a skip connection bypasses.
    """
    graph = trace_with_leaf(model, layer)
    cut = next((n for n in graph.nodes if n.op == "call_module" and n.target == layer), None)
    value = _single_output_value(output_node(graph))
    if cut is None or value is None:
        raise HeadNotFound(
            f"{type(model).__name__}.forward does not call the module {layer!r} as one step, or returns no tensor"
        )
    # a module returning a dict or tuple (a feature extractor) is crossed by the one item taken of it
    while cut is not None and len(cut.users) == 1:
        user = next(iter(cut.users))
        if user.op != "call_function" or user.target is not operator.getitem:
            break
        cut = user
    source = next(n for n in graph.nodes if n.op == "placeholder")
    try:
        rest = extract_head(model, graph, cut, value)
    except HeadNotFound:
        raise HeadNotFound(
            f"{type(model).__name__}: its output depends on more than the output of {layer!r} (a skip connection "
            f"passes it); cut at another module"
        ) from None
    return extract_head(model, graph, source, cut), rest
