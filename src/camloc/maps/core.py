"""What every map method shares: the output type, the ``MapMethod`` protocol, class choice and map finishing."""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import HeadNotFound, InvalidArgument
from .frames import normalize_maps

__all__ = [
    "AMP_TYPES",
    "CamOutput",
    "ClassTarget",
    "Classes",
    "MapMethod",
    "Normalize",
    "Target",
    "Targets",
    "autocast",
    "check_amp",
    "check_class_scores",
    "choose_classes",
    "class_of",
    "class_scores",
    "finish_maps",
    "output_tensor",
    "prepare_input",
    "score_targets",
    "target_classes",
    "target_lists",
    "target_score",
]

Normalize = Literal["none", "minmax", "max"]
#: ``amp=`` of the map methods: the forward pass in bfloat16 or float16 (autocast), the maps in float32.
AMP_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
Classes = int | Sequence[int] | Sequence[Sequence[int]] | Tensor
#: One image's model output (``Tensor[num_classes]``; ``Tensor[K, h, w]`` for a segmentation model)
#: -> a scalar score whose map is wanted.
Target = Callable[[Tensor], Tensor]
#: ``targets=`` of a map method: one target for every image, or per image one target or an equal-length
#: list of targets; a target is a class (an int or a :class:`ClassTarget`) or, for the methods that
#: support it, any :data:`Target` (see :mod:`camloc.maps.targets`).
Targets = int | Target | Sequence[int | Target] | Sequence[Sequence[int | Target]]


class ClassTarget:
    """The logit of one class: the default target, and what a class index in ``targets=`` means.

    Args:
        index: the class.
    """

    def __init__(self, index: int) -> None:
        self.index = int(index)

    def __repr__(self) -> str:
        return f"ClassTarget({self.index})"

    def __call__(self, output: Tensor) -> Tensor:
        """The logit ``output[index]`` of one image's output ``Tensor[num_classes]``."""
        check_class_scores(output, self)
        return output[..., self.index]


@dataclass
class CamOutput:
    """The result of one call of a map method on a batch of N images, k maps each.

    Attributes:
        logits: ``Tensor[N, num_classes]`` the model's output (a single logit per image as ``Tensor[N, 1]``;
            ``Tensor[N, K, h, w]`` for a segmentation model).
        classes: ``Tensor[N, k]`` the class of each map, best first for top-k (-1 for a custom target).
        scores: ``Tensor[N, k]`` softmax probabilities of those classes (the sigmoid of a single logit;
            the target's score for a custom target).
        raw: ``Tensor[N, k, h, w]`` maps at the resolution of the explained layer.
        maps: ``Tensor[N, k, H, W]`` maps upsampled to the input, or None when ``upsample=False``.
        features: ``Tensor[N, C, h, w]`` the explained layer's output, for more classes' maps.
    """

    logits: Tensor
    classes: Tensor
    scores: Tensor
    raw: Tensor
    maps: Tensor | None
    features: Tensor


class MapMethod(Protocol):
    """What CAM and every other method offer, and what runs over data (evaluate, explain, ...) use.

    Attributes:
        name: the method's name in :data:`camloc.maps.METHODS` (``"cam"``, ``"gradcam"``, ...).
        model: the explained classifier.
        target_layer: the module whose output is explained (None: the map the GAP head pools).
        reuses_forward: whether :meth:`more_maps` is computed from ``output`` alone, without running
            the model again (CAM: yes; gradient and perturbation methods: no).
    """

    name: str
    model: nn.Module
    target_layer: str | None
    reuses_forward: bool

    def __call__(
        self,
        images: Tensor,
        topk: int = 1,
        classes: Classes | None = None,
        *,
        targets: Targets | None = None,
        upsample: bool = True,
    ) -> CamOutput:
        """Maps of the ``topk`` best classes of each image in ``images`` (``Tensor[N, 3, H, W]``).

        Or of ``classes`` (one index for every image, one per image, or an equal-length list per image),
        or of ``targets`` (see :data:`Targets`: a class target is the same as that class in ``classes``;
        a method that cannot honour a target raises :class:`~camloc.errors.InvalidArgument`).
        """
        ...

    def more_maps(self, output: CamOutput, images: Tensor, classes: Tensor) -> Tensor:
        """``Tensor[N, k, h, w]`` raw maps of ``classes`` (``Tensor[N, k]``) for the images of ``output``.

        Maps as ``output.raw`` holds them (same ReLU and normalization); ``images`` is the batch
        ``output`` came from, for methods that must run the model again.
        """
        ...


def check_amp(amp: str | None) -> str | None:
    """``amp`` when it is None or a key of :data:`AMP_TYPES`; else :class:`~camloc.errors.InvalidArgument`."""
    if amp is not None and amp not in AMP_TYPES:
        raise InvalidArgument("amp", f"amp must be None or one of {', '.join(AMP_TYPES)}, not {amp!r}")
    return amp


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """Mixed precision for a forward pass on ``device`` (``torch.autocast``); a no-op context without ``amp``."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_TYPES[amp])


def prepare_input(images: Tensor, device: torch.device, channels_last: bool | None) -> Tensor:
    """Images on the model's device; channels_last when asked, or by default on the CPU (faster convolutions)."""
    x = images.to(device, non_blocking=True)
    if channels_last if channels_last is not None else x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def choose_classes(logits: Tensor, topk: int, classes: Classes | None) -> tuple[Tensor, Tensor]:
    """``(classes Tensor[N, k], their softmax scores Tensor[N, k])``: the ``topk`` best, or the ones named.

    Args:
        logits: ``Tensor[N, num_classes]``; with one column (a binary head's single logit) the scores
            are its sigmoid, the probability of the positive class.
        topk: how many of the best classes, when ``classes`` is None.
        classes: one index for every image, one index per image, or an equal-length list per image.

    Raises:
        InvalidArgument: per-pixel scores (a segmentation model) have no classes to choose: pass ``targets=``.
    """
    logits = logits.detach()
    if logits.ndim != 2:
        raise InvalidArgument(
            "targets",
            f"targets= needed: the model's output has shape {tuple(logits.shape)}, not class scores "
            "(N, num_classes), so it has no top-k classes or classes=; pass targets=[camloc.SegmentationTarget"
            "(class, mask=...), ...], one per image",
            arguments=["targets"],
        )
    if classes is None:
        if not 1 <= topk <= logits.shape[1]:
            raise InvalidArgument("topk", f"topk must be between 1 and {logits.shape[1]}, not {topk}")
        chosen = logits.topk(topk, dim=1).indices  # ranking logits avoids ties where softmax underflows
    else:
        chosen = _class_matrix(classes, logits.shape[0], logits.shape[1], logits.device)
    probabilities = logits.float().sigmoid() if logits.shape[1] == 1 else logits.float().softmax(dim=1)
    return chosen, probabilities.gather(1, chosen)


def finish_maps(raw: Tensor, size: torch.Size | None, mode: str, normalize: Normalize) -> tuple[Tensor, Tensor | None]:
    """``(raw, upsampled)`` maps, each normalized from its own extremes; no upsampling when ``size`` is None."""
    with torch.no_grad():
        maps = None
        if size is not None:
            maps = normalize_maps(F.interpolate(raw, size=size, mode=mode, align_corners=False), normalize)
        return normalize_maps(raw, normalize), maps


def class_of(target: object) -> int | None:
    """The class a target stands for (an int, a :class:`ClassTarget`), or None for any other callable.

    pytorch-grad-cam's ``ClassifierOutputTarget(c)`` (the logit of class ``c``) counts as class ``c``,
    so that code written for it runs unchanged.
    """
    if isinstance(target, bool):
        return None
    if isinstance(target, numbers.Integral):  # int, numpy's integers
        return int(target)
    if isinstance(target, Tensor) and target.ndim == 0 and not target.is_floating_point():
        return int(target)
    if isinstance(target, ClassTarget):
        return target.index
    category = getattr(target, "category", None)
    if type(target).__name__ == "ClassifierOutputTarget" and isinstance(category, int):
        return category
    return None


def class_scores(method: MapMethod, images: Tensor) -> Tensor:
    """``Tensor[N, num_classes]`` float32 scores of ``method``'s model for ``images``, without maps.

    For classifying at one input size while the maps come from another. camloc's methods run their own
    forward pass (``method.class_scores``: the same scores their maps' call gives); any other method's
    model runs as it is, on its device, with the method's ``channels_last`` and ``amp`` where it has them.
    """
    own = getattr(method, "class_scores", None)
    if callable(own):
        return own(images)
    model = method.model
    x = prepare_input(images, next(model.parameters()).device, getattr(method, "channels_last", None))
    with torch.no_grad(), autocast(x.device, getattr(method, "amp", None)):
        return output_tensor(model(x)).float()


def output_tensor(output: object) -> Tensor:
    """The scores in a model's output: a tensor, ``output["out"]`` (torchvision segmentation), ``.logits``.

    Hugging Face outputs have ``.logits`` (a dict ``{"logits": ...}`` once traced); a tuple gives its
    first element. A single logit per image, ``Tensor[N]``, is read as ``Tensor[N, 1]``.

    Raises:
        HeadNotFound: nothing there is a tensor of scores.
    """
    if isinstance(output, Mapping):
        output = next((output[k] for k in ("out", "logits") if k in output), output)
    elif isinstance(output, (tuple, list)) and output:
        output = output[0]
    elif not isinstance(output, Tensor):
        output = getattr(output, "logits", output)
    if not isinstance(output, Tensor) or output.ndim == 0:
        raise HeadNotFound(
            f"the model's output is a {type(output).__name__}, not scores: expected a tensor, "
            "a dict with 'out' or 'logits', or an object with .logits"
        )
    return output[:, None] if output.ndim == 1 else output


def check_class_scores(output: Tensor, target: object) -> None:
    """Refuse, in one line, a class target on an output that is not one image's class scores ``Tensor[num_classes]``."""
    if output.ndim != 1:
        raise InvalidArgument(
            "targets",
            f"targets=: {target!r} is a target of class scores, but this model gives {tuple(output.shape)} per image "
            "(per-pixel scores? use camloc.SegmentationTarget(class, mask=...))",
            arguments=["targets"],
        )


def target_score(target: Target, output: Tensor) -> Tensor:
    """``target(output)`` as a scalar (a one-element result, such as pytorch-grad-cam's binary target's, too)."""
    score = target(output)
    if not isinstance(score, Tensor) or score.numel() != 1:
        shape = tuple(score.shape) if isinstance(score, Tensor) else type(score).__name__
        raise InvalidArgument(
            "targets", f"targets=: {target!r} must give one score per image, not {shape}", arguments=["targets"]
        )
    return score.reshape(())


def score_targets(lists: list[list[int | Target]], logits: Tensor) -> tuple[Tensor, Tensor, list[list[Target]]]:
    """``(classes, scores, callables)`` of targets that are not all classes: -1 and each target's score.

    Args:
        lists: per image, an equal-length list of targets (see :func:`target_lists`).
        logits: ``Tensor[N, ...]`` the model's output, read by :func:`output_tensor`.

    Returns:
        ``Tensor[N, k]`` the classes (-1 for a target that is not a class), ``Tensor[N, k]`` each target's
        score, and the targets as callables (a class as its :class:`ClassTarget`).
    """
    num_classes = logits.shape[1]
    known = [[class_of(t) for t in row] for row in lists]
    if any(c is not None and not 0 <= c < num_classes for row in known for c in row):
        raise InvalidArgument(
            "targets", f"targets=: class targets must lie in [0, {num_classes})", arguments=["targets"]
        )
    calls = [
        [ClassTarget(c) if c is not None else cast(Target, t) for c, t in zip(cs, ts, strict=True)]
        for cs, ts in zip(known, lists, strict=True)
    ]
    chosen = torch.tensor([[-1 if c is None else c for c in row] for row in known], device=logits.device)
    with torch.no_grad():
        scores = torch.stack(
            [torch.stack([target_score(t, logits[i]).float() for t in ts]) for i, ts in enumerate(calls)]
        )
    return chosen, scores, calls


def target_lists(targets: Targets, n: int) -> list[list[int | Target]]:
    """``targets`` as one equal-length list per image of the ``n`` images; else :class:`InvalidArgument`.

    A single target (not a list, tuple or tensor of them) is the target of every image.
    """
    if isinstance(targets, (Tensor, np.ndarray)):  # classes as a tensor: Tensor[N] or Tensor[N, k]
        targets = targets.tolist()
    if not isinstance(targets, (list, tuple)):
        return [[cast(int | Target, targets)] for _ in range(n)]
    lists = [list(t) if isinstance(t, (list, tuple)) else [t] for t in targets]
    if len(lists) != n or not lists or len({len(t) for t in lists}) != 1 or not lists[0]:
        raise InvalidArgument(
            "targets",
            f"targets= must give one target or an equal-length, non-empty list of targets per image ({n} images)",
            arguments=["targets"],
        )
    return cast(list[list[int | Target]], lists)


def target_classes(lists: list[list[int | Target]]) -> list[list[int]] | None:
    """The classes of per-image target lists when every target is a class (see :func:`class_of`), else None."""
    classes = [[class_of(t) for t in row] for row in lists]
    if any(c is None for row in classes for c in row):
        return None
    return cast(list[list[int]], classes)


def split_targets(
    targets: Targets | None, classes: Classes | None, n: int
) -> tuple[Classes | None, list[list[int | Target]] | None]:
    """``(classes, None)`` when ``targets`` are all classes (or absent), else ``(None, per-image target lists)``.

    Raises:
        InvalidArgument: both ``targets`` and ``classes`` given.
    """
    if targets is None:
        return classes, None
    if classes is not None:
        raise InvalidArgument(
            "targets", "targets=: give classes= or targets=, not both", arguments=["targets", "classes"]
        )
    lists = target_lists(targets, n)
    as_classes = target_classes(lists)
    return (as_classes, None) if as_classes is not None else (None, lists)  # a class target is its class


def _class_matrix(classes: Classes, n: int, num_classes: int, device: torch.device) -> Tensor:
    t = torch.as_tensor(classes, dtype=torch.long)
    if t.ndim == 0:
        t = t.expand(n)
    if t.ndim == 1:
        t = t.unsqueeze(1)
    if t.ndim != 2 or t.shape[0] != n:
        raise InvalidArgument(
            "classes",
            f"classes must give one index or one list of indices per image ({n} images), got shape {tuple(t.shape)}",
        )
    if t.numel() and (t.min() < 0 or t.max() >= num_classes):
        raise InvalidArgument(
            "classes", f"classes must lie in [0, {num_classes}), got {t.min().item()}..{t.max().item()}"
        )
    return t.to(device)
