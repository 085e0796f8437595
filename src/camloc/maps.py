"""Class activation maps: one forward pass, top-k classes, maps on the model's device."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .adapter import CamAdapter, adapt
from .images import Geometry

__all__ = ["CAM", "CamOutput", "Normalize", "normalize_maps", "to_image_frame"]

Normalize = Literal["none", "minmax", "max"]
Classes = int | Sequence[int] | Sequence[Sequence[int]] | Tensor


@dataclass
class CamOutput:
    logits: Tensor  # (N, num_classes)
    classes: Tensor  # (N, k) class indices, best first for top-k
    scores: Tensor  # (N, k) softmax probabilities of those classes
    raw: Tensor  # (N, k, h, w) maps at feature resolution
    maps: Tensor | None  # (N, k, H, W) maps upsampled to the input, None when upsample=False
    features: Tensor  # (N, C, h, w) the feature map, for more classes' maps without another forward


class CAM:
    """Class activation mapping (Zhou et al., CVPR 2016): ``M_c = sum_k w_k^c f_k``.

    No bias and no ReLU unless asked: the spatial mean of a raw map plus the class bias is the
    class logit. ``normalize`` is applied to ``raw`` and, separately, to the upsampled ``maps``
    (each from its own min/max, as wsolevaluation normalizes after resizing).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        relu: bool = False,
        normalize: Normalize = "none",
        upsample_mode: str = "bilinear",
        channels_last: bool | None = None,
    ) -> None:
        if normalize not in ("none", "minmax", "max"):
            raise ValueError(f"normalize must be 'none', 'minmax' or 'max', not {normalize!r}")
        self.model = model
        self.adapter: CamAdapter = adapt(model)
        self.relu = relu
        self.normalize = normalize
        self.upsample_mode = upsample_mode
        self.channels_last = channels_last

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def __call__(self, images: Tensor, topk: int = 1, classes: Classes | None = None, upsample: bool = True) -> CamOutput:
        """Maps of the ``topk`` best classes of each image, or of ``classes``.

        ``classes`` is one index for every image, one index per image, or a list of indices per
        image (all lists of equal length).
        """
        x = prepare_input(images, self.device, self.channels_last)
        with torch.no_grad():
            features, logits = self.adapter(x)
            chosen, scores = choose_classes(logits, topk, classes)
        raw = self.raw_maps(features, chosen)
        raw, maps = finish_maps(raw, x.shape[-2:] if upsample else None, self.upsample_mode, self.normalize)
        return CamOutput(logits, chosen, scores, raw, maps, features)

    def raw_maps(self, features: Tensor, classes: Tensor) -> Tensor:
        """Maps (N, k, h, w) of ``classes`` (N, k) from a feature map, before normalization."""
        weights = self.adapter.weights(features, classes.to(features.device))  # (N, k, C)
        with torch.no_grad():
            n, c, h, w = features.shape
            raw = torch.bmm(weights.to(features.dtype), features.reshape(n, c, h * w)).view(n, -1, h, w)
            return raw.relu() if self.relu else raw



def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def prepare_input(images: Tensor, device: torch.device, channels_last: bool | None) -> Tensor:
    """Images on the model's device; channels_last when asked, or by default on the CPU (faster convolutions)."""
    x = images.to(device, non_blocking=True)
    if channels_last if channels_last is not None else x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def choose_classes(logits: Tensor, topk: int, classes: Classes | None) -> tuple[Tensor, Tensor]:
    """(classes (N, k), their softmax scores): the ``topk`` best, or the ones the caller names."""
    logits = logits.detach()
    if classes is None:
        if not 1 <= topk <= logits.shape[1]:
            raise ValueError(f"topk must be between 1 and {logits.shape[1]}, not {topk}")
        chosen = logits.topk(topk, dim=1).indices  # ranking logits avoids ties where softmax underflows
    else:
        chosen = _class_matrix(classes, logits.shape[0], logits.shape[1], logits.device)
    return chosen, logits.float().softmax(dim=1).gather(1, chosen)


def finish_maps(raw: Tensor, size: torch.Size | None, mode: str, normalize: Normalize) -> tuple[Tensor, Tensor | None]:
    """(raw, upsampled) maps, each normalized from its own extremes; no upsampling when ``size`` is None."""
    with torch.no_grad():
        maps = None
        if size is not None:
            maps = normalize_maps(F.interpolate(raw, size=size, mode=mode, align_corners=False), normalize)
        return normalize_maps(raw, normalize), maps


def _class_matrix(classes: Classes, n: int, num_classes: int, device: torch.device) -> Tensor:
    t = torch.as_tensor(classes, dtype=torch.long)
    if t.ndim == 0:
        t = t.expand(n)
    if t.ndim == 1:
        t = t.unsqueeze(1)
    if t.ndim != 2 or t.shape[0] != n:
        raise ValueError(f"classes must give one index or one list of indices per image ({n} images), got shape {tuple(t.shape)}")
    if t.numel() and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"classes must lie in [0, {num_classes}), got {t.min().item()}..{t.max().item()}")
    return t.to(device)


def normalize_maps(maps: Tensor, how: Normalize) -> Tensor:
    """Per-map normalization over the last two dims; a constant map becomes zeros, NaNs are ignored."""
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
        raise ValueError(f"normalize must be 'none', 'minmax' or 'max', not {how!r}")
    return out.view_as(maps)


def to_image_frame(raw: Tensor, geometry: Geometry, mode: str = "bilinear") -> Tensor:
    """Resample (k, h, w) maps of the model input onto the original image's pixel grid.

    For ``squash`` this equals resizing the raw maps straight to (height, width). For ``crop``,
    pixels outside the centre crop the model saw are NaN.
    """
    g = geometry
    # Original pixel centres -> input-frame coordinates -> grid_sample's [-1, 1] (align_corners=False),
    # in float64 on the CPU (exact enough for any map dtype, and possible on every device).
    xs = ((torch.arange(g.width, dtype=torch.float64) + 0.5) / g.scale_x - g.left) * (2.0 / g.size) - 1.0
    ys = ((torch.arange(g.height, dtype=torch.float64) + 0.5) / g.scale_y - g.top) * (2.0 / g.size) - 1.0
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).unsqueeze(0).to(raw.device, raw.dtype)
    out = F.grid_sample(raw.unsqueeze(0), grid, mode=mode, padding_mode="border", align_corners=False)[0]
    inside = ((xs.abs() <= 1).view(1, 1, -1) & (ys.abs() <= 1).view(1, -1, 1)).to(raw.device)
    return out if bool(inside.all()) else out.masked_fill(~inside, float("nan"))
