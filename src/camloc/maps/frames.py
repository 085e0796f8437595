"""Map normalization, and maps resampled from the model's input onto the original image's pixels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InvalidArgument
from ..images import Geometry

__all__ = ["normalize_maps", "to_image_frame"]


def normalize_maps(maps: Tensor, how: str) -> Tensor:
    """Per-map normalization over the last two dimensions.

    Args:
        maps: ``Tensor[..., H, W]``.
        how: ``"none"``; ``"minmax"`` (``(m - min) / (max - min)``, a constant map becomes zeros);
            ``"max"`` (``m / max`` when the max is positive, else the map unchanged). NaN pixels are
            ignored and stay NaN.

    Returns:
        ``Tensor[..., H, W]`` of the same shape.

    Example:
        >>> import torch
        >>> normalize_maps(torch.tensor([[-1.0, 0.0], [1.0, 3.0]]), "minmax")
        tensor([[0.0000, 0.2500],
                [0.5000, 1.0000]])
        >>> normalize_maps(torch.tensor([[-1.0, 0.0], [1.0, 4.0]]), "max")
        tensor([[-0.2500,  0.0000],
                [ 0.2500,  1.0000]])
    """
    if how == "none":
        return maps
    flat = maps.flatten(-2)
    finite = torch.isfinite(flat)
    hi = torch.where(finite, flat, -torch.inf).amax(-1, keepdim=True)
    if how == "max":
        out = flat / torch.where(hi > 0, hi, torch.ones_like(hi))
    elif how == "minmax":
        lo = torch.where(finite, flat, torch.inf).amin(-1, keepdim=True)
        span = hi - lo
        out = torch.where(span > 0, (flat - lo) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)
        out = torch.where(finite, out, flat)
    else:
        raise InvalidArgument("normalize", f"normalize must be 'none', 'minmax' or 'max', not {how!r}")
    return out.view_as(maps)


def to_image_frame(raw: Tensor, geometry: Geometry, mode: str = "bilinear") -> Tensor:
    """Resample maps of the model input onto the original image's pixel grid.

    Args:
        raw: ``Tensor[k, h, w]`` maps over the model's input.
        geometry: where that square lies in the original image.
        mode: ``grid_sample``'s interpolation.

    Returns:
        ``Tensor[k, height, width]`` in the original image's pixels. For ``squash`` and ``full``
        this equals resizing the maps straight to (height, width); for ``crop``, pixels outside the
        centre crop the model saw are NaN.
    """
    g = geometry
    # Original pixel centres -> input-frame coordinates -> grid_sample's [-1, 1] (align_corners=False),
    # in float64 on the CPU (exact enough for any map dtype, and possible on every device).
    xs = ((torch.arange(g.width, dtype=torch.float64) + 0.5) / g.scale_x - g.left) * (2.0 / g.input_width) - 1.0
    ys = ((torch.arange(g.height, dtype=torch.float64) + 0.5) / g.scale_y - g.top) * (2.0 / g.input_height) - 1.0
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).unsqueeze(0).to(raw.device, raw.dtype)
    out = F.grid_sample(raw.unsqueeze(0), grid, mode=mode, padding_mode="border", align_corners=False)[0]
    inside = ((xs.abs() <= 1).view(1, 1, -1) & (ys.abs() <= 1).view(1, -1, 1)).to(raw.device)
    return out if bool(inside.all()) else out.masked_fill(~inside, float("nan"))
