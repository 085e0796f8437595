"""Targets beyond one class: several classes at once, the negative of a logit, a class over a region of a mask.

A target maps one image's model output to the scalar score whose map is wanted; ``targets=`` of every
map method takes them, one per image (or an equal-length list per image), so each image of a batch
may have its own. Beside a class (an int, :class:`~camloc.maps.ClassTarget`):

- :class:`ClassesTarget`: a weighted sum of class logits, ``S = sum_j a_j y[c_j]`` (all ``a_j = 1``: the
  classes of a multi-label, sigmoid model at once).
- :class:`NegativeTarget`: ``S = -y[c]``, the other class of a binary model's single logit.
- :class:`SegmentationTarget`: ``S = sum_ij m_ij y[c, i, j]``, a class's per-pixel logits summed over a
  mask or a box (segmentation models: torchvision FCN / DeepLabV3, Hugging Face SegFormer / UperNet).

CAM is linear in the class weights, so it explains any weighted sum of logits exactly: the map of
``ClassesTarget([3, 7])`` is the CAM of class 3 plus the CAM of class 7 (:func:`linear_form`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InvalidArgument
from .core import check_class_scores, class_of

__all__ = ["ClassesTarget", "NegativeTarget", "SegmentationTarget", "linear_form"]


class ClassesTarget:
    """A weighted sum of class logits ``S = sum_j a_j y[c_j]``: several classes of a multi-label model at once.

    Args:
        classes: the classes ``c_j``.
        weights: their weights ``a_j`` (default: all 1, the plain sum).

    Example::

        out = camloc.GradCAM(model)(images, targets=[camloc.ClassesTarget([3, 7])] * len(images))
    """

    def __init__(self, classes: Sequence[int], weights: Sequence[float] | None = None) -> None:
        self.classes = tuple(int(c) for c in classes)
        self.weights = tuple(float(w) for w in weights) if weights is not None else (1.0,) * len(self.classes)
        if not self.classes or len(self.weights) != len(self.classes):
            raise InvalidArgument(
                "targets", "ClassesTarget needs at least one class and one weight per class", arguments=["targets"]
            )

    def __repr__(self) -> str:
        if all(w == 1.0 for w in self.weights):
            return f"{type(self).__name__}({list(self.classes)})"
        return f"{type(self).__name__}({list(self.classes)}, weights={list(self.weights)})"

    def __call__(self, output: Tensor) -> Tensor:
        """The score of one image's output ``Tensor[num_classes]``: a scalar."""
        check_class_scores(output, self)
        if not all(0 <= c < output.shape[0] for c in self.classes):
            raise InvalidArgument(
                "targets", f"targets=: {self!r}: classes must lie in [0, {output.shape[0]})", arguments=["targets"]
            )
        weights = torch.tensor(self.weights, dtype=output.dtype, device=output.device)
        return (output[list(self.classes)] * weights).sum()


class NegativeTarget(ClassesTarget):
    """Minus one logit, ``S = -y[c]``: the other class of a binary model that has one logit (``nn.Linear(C, 1)``).

    A map of ``-y`` shows what speaks against the class (for a binary head: for the negative class).

    Args:
        index: the logit (default 0, a binary head's only one).
    """

    def __init__(self, index: int = 0) -> None:
        super().__init__([index], [-1.0])

    def __repr__(self) -> str:
        return f"NegativeTarget({self.classes[0]})"


class SegmentationTarget:
    """A class's logits summed over a region: ``S = sum_ij m_ij y[c, i, j]`` of one output ``Tensor[K, h, w]``.

    The region is a mask, a box, or (neither given) the whole output. A mask or box of another size
    than the output's ``(h, w)`` is resized to it by area averaging, so a mask drawn on the input image
    also serves a model whose output is smaller (SegFormer's is a quarter of the input).

    Args:
        category: the class ``c``.
        mask: ``(H, W)`` weights of the pixels (1 inside the region, 0 outside), a tensor or an array.
        box: ``(x0, y0, x1, y1)`` inclusive pixel corners of the region (camloc's box convention).
        size: ``(H, W)`` of the frame ``box`` is drawn in (the input image's, say); default: the output's.

    Example::

        target = camloc.SegmentationTarget(12, mask=labels == 12)   # labels: (H, W) class of each pixel
        out = camloc.GradCAM(fcn, "backbone.layer4")(images, targets=[target])
    """

    def __init__(
        self,
        category: int,
        mask: Tensor | np.ndarray | None = None,
        *,
        box: Sequence[int] | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        if mask is not None and box is not None:
            raise InvalidArgument(
                "targets", "SegmentationTarget: give a mask or a box, not both", arguments=["targets"]
            )
        self.category = int(category)
        self.mask = None if mask is None else torch.as_tensor(np.asarray(mask), dtype=torch.float32)
        if self.mask is not None and self.mask.ndim != 2:
            raise InvalidArgument(
                "targets",
                f"SegmentationTarget: the mask must be (H, W), not {tuple(self.mask.shape)}",
                arguments=["targets"],
            )
        self.box = None if box is None else tuple(int(v) for v in box)
        self.size = size

    def __repr__(self) -> str:
        region = ", mask" if self.mask is not None else f", box={self.box}" if self.box is not None else ""
        return f"SegmentationTarget({self.category}{region})"

    def __call__(self, output: Tensor) -> Tensor:
        """The score of one image's per-pixel output ``Tensor[K, h, w]``: a scalar."""
        if output.ndim != 3:
            raise InvalidArgument(
                "targets",
                f"targets=: {self!r} needs per-pixel scores Tensor[K, h, w] per image, but this model gives "
                f"{tuple(output.shape)}",
                arguments=["targets"],
            )
        if not 0 <= self.category < output.shape[0]:
            raise InvalidArgument(
                "targets", f"targets=: {self!r}: the class must lie in [0, {output.shape[0]})", arguments=["targets"]
            )
        scores = output[self.category]
        weights = self.weights((scores.shape[0], scores.shape[1]))
        return scores.sum() if weights is None else (scores * weights.to(scores.device, scores.dtype)).sum()

    def weights(self, size: tuple[int, int]) -> Tensor | None:
        """``Tensor[h, w]`` pixel weights on an output grid of ``size``, or None for the whole output."""
        mask = self.mask
        if self.box is not None:
            frame = self.size if self.size is not None else size
            x0, y0, x1, y1 = self.box
            mask = torch.zeros(frame)
            mask[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = 1
        if mask is None or tuple(mask.shape) == size:
            return mask
        return F.adaptive_avg_pool2d(mask[None, None], size)[0, 0]


def linear_form(target: object) -> tuple[list[int], list[float]] | None:
    """``(classes, weights)`` of a target that is a weighted sum of class logits, else None.

    A class (see :func:`~camloc.maps.core.class_of`) is itself with weight 1; a :class:`ClassesTarget`
    (and :class:`NegativeTarget`) its classes and weights; pytorch-grad-cam's
    ``BinaryClassifierOutputTarget(category)`` is ``+y[0]`` for category 1 and ``-y[0]`` otherwise.
    """
    index = class_of(target)
    if index is not None:
        return [index], [1.0]
    if isinstance(target, ClassesTarget):
        return list(target.classes), list(target.weights)
    if type(target).__name__ == "BinaryClassifierOutputTarget":
        return [0], [1.0 if getattr(target, "category", None) == 1 else -1.0]
    return None
