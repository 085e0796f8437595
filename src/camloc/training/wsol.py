"""Training losses for weakly-supervised localization that keep plain CAM at inference (``--wsol-loss``).

BGC (Kim et al., "Bridging the Gap between Classification and Localization for Weakly Supervised
Object Localization", CVPR 2022, arXiv:2204.00220) finds that CAM stays on the most telling part
because, elsewhere on the object, the features point away from the class's weight vector even
where they are large. It adds three terms to the cross-entropy, computed on the last feature map
``f`` (``Tensor[N, C, h, w]``) and the classifier's rows ``w_c``, and nothing at inference:

- **direction** (``sim``): with ``s_c(p) = cos(f(p), w_c)`` and ``n(p)`` the norm ``||f(p)||``
  min-max normalized over the image's cells, raise the mean of ``s_y`` (the label's) over the
  cells where ``n > fg`` and lower it over the cells where ``n < bg``: where the features are
  strong they should point at the class.
- **norm**: raise the mean of ``n`` over the cells where ``max_c s_c > 0`` and lower it where
  ``max_c s_c < 0`` (the authors' CUB form; their ImageNet form reads ``s_y``).
- **drop** (attentive dropout): the feature map after ``layer`` has its cells above
  ``drop_threshold`` x the maximum of its channel mean zeroed, each with probability
  ``drop_prob``; the layers after it run on both, and the mean absolute difference of the two
  final feature maps is the term: the features must not depend on the strongest cells alone.

``loss = CE + drop * L_drop``, plus ``sim * L_sim + norm * L_norm`` after the first ``warm``
fraction of the epochs (the authors: 20 of 70). Defaults are the authors' ResNet50-on-CUB values.
Where camloc departs from their code is in docs/methods.md ("Training losses that keep plain CAM").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ..errors import HeadNotFound, InvalidArgument, did_you_mean
from ..models.graph import extract_head, find_gap_head, output_node, trace_with_leaf

__all__ = ["DROP_STAGE", "WSOL_LOSSES", "Bgc", "BgcNet", "BgcOptions", "attentive_drop", "bgc_terms", "bgc_options"]

WSOL_LOSSES = ("bgc",)
# Where attentive dropout cuts by default: after the first block of the last stage, as the authors
# cut ResNet50 after layer4.0 (MobileNetV2's last stride-32 stage starts at features.14).
DROP_STAGE = {"mobilenet_v2": "features.14"}
_EPS = 1e-15


@dataclass(frozen=True)
class BgcOptions:
    """BGC's weights and thresholds (``--wsol-option NAME=VALUE``); the defaults are the authors' for ResNet50 on CUB.

    Attributes:
        sim: weight of the direction-alignment term.
        norm: weight of the feature-norm term.
        drop: weight of the attentive-dropout consistency term (0: no second pass).
        fg: cells whose min-max normalized feature norm exceeds this are foreground for ``sim``.
        bg: cells whose normalized norm is below this are background for ``sim``.
        drop_threshold: cells whose channel mean exceeds this fraction of its maximum may be dropped.
        drop_prob: the probability that such a cell is dropped.
        warm: the fraction of the epochs trained with cross-entropy and ``drop`` only.
        layer: the module after which cells are dropped (default: :data:`DROP_STAGE` of the architecture).
    """

    sim: float = 0.5
    norm: float = 0.05
    drop: float = 2.0
    fg: float = 0.4
    bg: float = 0.2
    drop_threshold: float = 0.8
    drop_prob: float = 0.25
    warm: float = 2 / 7
    layer: str | None = None

    def warm_epochs(self, epochs: int) -> int:
        """The epochs (of ``epochs``) before ``sim`` and ``norm`` join the loss."""
        return round(self.warm * epochs)


def bgc_options(options: dict | None, arch: str) -> BgcOptions:
    """:class:`BgcOptions` from ``--wsol-option`` values (strings or numbers), the drop layer resolved for ``arch``.

    Raises:
        InvalidArgument: an unknown name, a value that is not a number, or no drop layer known for ``arch``.
    """
    known = {f.name: f for f in fields(BgcOptions)}
    values: dict = {}
    for name, value in (options or {}).items():
        if name not in known:
            raise InvalidArgument(
                "wsol_options", f"wsol option {name!r} is not one of {', '.join(known)}{did_you_mean(name, known)}"
            )
        try:
            values[name] = value if name == "layer" else float(value)
        except (TypeError, ValueError):
            raise InvalidArgument("wsol_options", f"wsol option {name}={value!r} is not a number") from None
    chosen = BgcOptions(**values)
    if not (0 <= chosen.bg <= chosen.fg <= 1 and 0 <= chosen.drop_prob <= 1 and 0 <= chosen.warm <= 1):
        raise InvalidArgument("wsol_options", "wsol options need 0 <= bg <= fg <= 1, drop_prob and warm in [0, 1]")
    if chosen.layer is None and chosen.drop:
        if arch not in DROP_STAGE:
            raise InvalidArgument(
                "wsol_options", f"--wsol-loss bgc: name the layer to drop cells after (--wsol-option layer=...) "
                f"for {arch!r}, or drop=0"
            )  # fmt: skip
        chosen = BgcOptions(**{**asdict(chosen), "layer": DROP_STAGE[arch]})
    return chosen


def attentive_drop(x: Tensor, threshold: float, prob: float) -> Tensor:
    """``x`` (``Tensor[N, C, h, w]``) with its strong cells zeroed, each with probability ``prob``.

    A cell is strong when its channel mean exceeds ``threshold`` x the maximum of the channel mean over
    the image's cells. The draws come from torch's CPU generator, which a model file keeps for resuming.

    Example:
        >>> x = torch.tensor([[[[1.0, 9.0], [10.0, 2.0]]]])
        >>> attentive_drop(x, 0.8, 1.0)
        tensor([[[[1., 0.],
                  [0., 2.]]]])
    """
    mean = x.mean(dim=1, keepdim=True)
    strong = mean > threshold * mean.amax(dim=(2, 3), keepdim=True)
    drawn = torch.rand(mean.shape) < prob  # the CPU generator, whatever the device: resumable
    return x * ~(strong & drawn.to(x.device))


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Per image, the mean of ``values`` (``Tensor[N, L]``) over ``mask``'s cells; 0 where there are none."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(1) / (mask.sum(1) + _EPS)


def bgc_terms(features: Tensor, sim: Tensor, labels: Tensor, options: BgcOptions) -> tuple[Tensor, Tensor]:
    """BGC's direction and norm terms of each image: ``(Tensor[N], Tensor[N])``.

    Args:
        features: ``Tensor[N, C, h, w]`` the last feature map.
        sim: ``Tensor[N, K, h, w]`` the cosine of each cell's feature with each class's weight vector.
        labels: ``Tensor[N]`` the images' classes.
        options: the thresholds ``fg`` and ``bg``.

    Returns:
        ``(mean s_y over background - mean s_y over foreground, mean norm where max_c s_c < 0 - mean where > 0)``,
        the foreground and background of the first found by the min-max normalized feature norm.
    """
    n = len(labels)
    norm = features.norm(dim=1).flatten(1)  # (N, hw)
    lo = norm.amin(1, keepdim=True)
    norm = (norm - lo) / ((norm.amax(1, keepdim=True) - lo) + _EPS)
    target = sim[torch.arange(n, device=sim.device), labels].flatten(1)
    direction = _masked_mean(target, norm < options.bg) - _masked_mean(target, norm > options.fg)
    best = sim.amax(1).flatten(1)
    strength = _masked_mean(norm, best < 0) - _masked_mean(norm, best > 0)
    return direction, strength


class BgcNet(nn.Module):
    """``model`` run for BGC: ``(logits, features, erased features, cosines)`` from one call (what DDP wraps).

    ``model`` is traced once and cut after ``start`` (its input is that module's output; None: the
    images), after ``options.layer`` (where cells are dropped) and at its global-average-pooling head
    (found as CAM finds it). The parts share ``model``'s modules and parameters, so training them
    trains ``model``.

    Raises:
        InvalidArgument: ``model`` has no GAP + linear head.
        HeadNotFound: ``model`` cannot be cut after ``start`` or ``options.layer``.
    """

    def __init__(self, model: nn.Module, options: BgcOptions, start: str | None = None) -> None:
        super().__init__()
        self.options = options
        layer = options.layer if options.drop else None
        graph = trace_with_leaf(model, start, layer)
        head = find_gap_head(graph, model)
        if head is None or head.classifier is None:
            raise InvalidArgument(
                "wsol_loss",
                f"--wsol-loss bgc needs a global-average-pooling + linear head; {type(model).__name__} has none",
            )
        value = output_node(graph).args[0]
        assert isinstance(value, fx.Node)
        source = _output_of(graph, start, model) if start else next(n for n in graph.nodes if n.op == "placeholder")
        middle = _output_of(graph, layer, model) if layer else source
        self.before = extract_head(model, graph, source, middle) if layer else nn.Identity()
        self.body = extract_head(model, graph, middle, head.feature)
        self.head = extract_head(model, graph, head.feature, value)
        self.classifier: nn.Module = head.classifier

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """``(logits, features, erased, sim)`` of the inputs ``x``.

        ``Tensor[N, K]``, ``Tensor[N, C, h, w]``, the same from the dropped cells (None when ``drop`` is
        0), and ``Tensor[N, K, h, w]`` the cosine of each cell's feature with each class's weight vector.
        """
        options = self.options
        middle = self.before(x)
        features = self.body(middle)
        erased = None
        if options.drop:
            erased = self.body(attentive_drop(middle, options.drop_threshold, options.drop_prob))
        logits = self.head(features)
        weight = self.classifier.weight
        assert isinstance(weight, Tensor)
        weight = weight.reshape(weight.shape[0], -1)
        sim = torch.einsum("nchw,kc->nkhw", F.normalize(features, dim=1), F.normalize(weight, dim=1))
        return logits, features, erased, sim


def _output_of(graph: fx.Graph, name: str, model: nn.Module) -> fx.Node:
    """The node calling module ``name``: where the model is cut."""
    node = next((n for n in graph.nodes if n.op == "call_module" and n.target == name), None)
    if node is None:
        raise HeadNotFound(f"{type(model).__name__}.forward does not call the module {name!r} as one step")
    return node


class Bgc:
    """BGC's loss of a batch: call with the output of :class:`BgcNet`, the labels and the epoch."""

    def __init__(self, options: BgcOptions, epochs: int, label_smoothing: float = 0.0) -> None:
        self.options, self.label_smoothing = options, label_smoothing
        self.warm = options.warm_epochs(epochs)

    def __call__(
        self, out: tuple[Tensor, Tensor, Tensor | None, Tensor], labels: Tensor, epoch: int
    ) -> tuple[Tensor, Tensor, dict[str, float]]:
        """``(logits, the loss summed over the batch, each term's sum over the batch)``."""
        logits, features, erased, sim = out
        options = self.options
        ce = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing, reduction="sum")
        direction, strength = bgc_terms(features, sim, labels, options)
        terms = {"ce": ce, "sim": direction.sum(), "norm": strength.sum()}
        loss = ce
        if erased is not None:
            terms["drop"] = (features - erased).abs().flatten(1).mean(1).sum()
            loss = loss + options.drop * terms["drop"]
        if epoch >= self.warm:
            loss = loss + options.sim * terms["sim"] + options.norm * terms["norm"]
        return logits, loss, {k: float(v.detach()) for k, v in terms.items()}
