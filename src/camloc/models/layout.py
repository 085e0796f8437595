"""Feature maps in the layouts models give them, read as ``(N, C, h, w)``.

torchvision CNNs give ``(N, C, h, w)``; timm's Swin and Hiera-det, Hugging Face's Swin and
ConvNeXt stages give channels last ``(N, h, w, C)``; vision transformers give tokens
``(N, prefix + h * w, C)`` with class, distillation or register tokens first and the patches in
row-major order. :func:`to_grid` turns any of them into ``(N, C, h, w)`` or refuses with one line:
a map is never returned misread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ..errors import HeadNotFound

__all__ = ["Layout", "grid_size", "to_grid"]

_MAX_PREFIX = 16  # class + distillation + register tokens of the models in use stay well below this


@dataclass(frozen=True)
class Layout:
    """How a model lays out one feature tensor.

    Attributes:
        channels: the number of channels (the head's input width); None: unknown, a 4-D tensor is
            then taken as ``(N, C, h, w)``.
        prefix: tokens before the patch tokens (class, distillation, register); None: found from the
            token count and the input's shape.
        patch: pixels per token ``(ph, pw)`` at this layer; None: found from the token count.
    """

    channels: int | None = None
    prefix: int | None = None
    patch: tuple[int, int] | None = None

    def to_grid(self, features: Tensor, input_size: tuple[int, int], *, owner: str = "model") -> Tensor:
        """``features`` as ``Tensor[N, C, h, w]``; see :func:`to_grid`."""
        return to_grid(features, input_size, channels=self.channels, prefix=self.prefix, patch=self.patch, owner=owner)


def to_grid(
    features: Tensor,
    input_size: tuple[int, int],
    *,
    channels: int | None = None,
    prefix: int | None = None,
    patch: tuple[int, int] | None = None,
    owner: str = "model",
) -> Tensor:
    """A feature tensor of any common layout as ``Tensor[N, C, h, w]`` (a view where possible).

    Args:
        features: ``Tensor[N, C, h, w]``, ``Tensor[N, h, w, C]`` or tokens ``Tensor[N, L, C]``.
        input_size: ``(H, W)`` of the model input, to lay tokens out with the input's aspect.
        channels: the number of channels the head takes; decides NCHW vs NHWC and checks tokens.
        prefix: tokens before the patches; None: the smallest count that leaves a grid of the input's aspect.
        patch: pixels per token ``(ph, pw)``; None: found from the token count.
        owner: the model's name, for the error message.

    Raises:
        HeadNotFound: the tensor fits none of the layouts (never a silently misread map).
    """
    shape = tuple(features.shape)
    if features.ndim == 4:
        if channels is None or shape[1] == channels:
            return features
        if shape[3] == channels:
            return features.permute(0, 3, 1, 2)
    elif features.ndim == 3 and (channels is None or shape[2] == channels):
        count = shape[1]
        prefixes = [prefix] if prefix is not None else range(min(_MAX_PREFIX, count - 1) + 1)
        for p in prefixes:
            size = grid_size(count - p, input_size, patch)
            if size is not None:
                n, _, c = shape
                return features[:, p:].transpose(1, 2).reshape(n, c, *size)
        raise HeadNotFound(
            f"{owner}: {count} tokens of width {shape[2]} make no grid of the {input_size[0]} x {input_size[1]} input"
            + (f" after {prefix} prefix token(s)" if prefix is not None else "")
        )
    want = f"{channels} channels" if channels is not None else "a channel axis"
    raise HeadNotFound(
        f"{owner}: a feature tensor of shape {shape} is neither (N, C, h, w), (N, h, w, C) nor tokens (N, L, C) "
        f"with {want}"
    )


def grid_size(count: int, input_size: tuple[int, int], patch: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """``(h, w)`` with ``h * w == count`` laid over an ``(H, W)`` input, or None when no such grid fits.

    With ``patch`` the grid is ``(H // ph, W // pw)``; without, the stride that makes ``count``
    tokens of the input's aspect, rounded up or down (odd sizes of strided stages).
    """
    height, width = input_size
    if count <= 0:
        return None
    if patch is not None:
        size = (height // patch[0], width // patch[1])
        return size if size[0] * size[1] == count else None
    stride = math.sqrt(height * width / count)
    fits = [
        (abs(math.log((h / (count // h)) / (height / width))), h)
        for h in {math.floor(height / stride), math.ceil(height / stride)}
        if h > 0 and count % h == 0
    ]
    best = min(fits, default=None)
    return (best[1], count // best[1]) if best is not None and best[0] < math.log(1.5) else None
