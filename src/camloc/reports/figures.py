"""Pictures: heat-map overlays, boxes on images, the paper's top-k grid, accuracy-vs-threshold curves, histograms."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from ..boxes.box import Box
from ..errors import InvalidArgument
from ..maps.frames import normalize_maps
from ..utils import atomic_path

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "curves_figure",
    "draw_box",
    "histogram_figure",
    "overlay",
    "plot_curves",
    "save_image",
    "score_text",
    "topk_grid",
]


def overlay(
    image: Image.Image | np.ndarray,
    heat: np.ndarray | Tensor,
    alpha: float = 0.5,
    cmap: str = "jet",
    *,
    normalize: str = "max",
) -> Image.Image:
    """A colour-mapped heat map blended over an RGB image: one call from a CAM to a picture.

    Args:
        image: the photo, PIL or ``uint8[H, W, 3]``.
        heat: ``[h, w]`` map, numpy or torch, any size (resized bilinearly to the image); NaN pixels
            (outside what the model saw) stay uncoloured.
        alpha: opacity of the heat map.
        cmap: a matplotlib colour map.
        normalize: ``"max"`` (the map over its maximum, negatives at 0: what the paper's box rule
            keeps is what lights up), ``"minmax"``, or ``"none"`` (the map is already in [0, 1]).

    Returns:
        The blended RGB image, the size of ``image``.

    Example:
        >>> import numpy as np
        >>> photo = np.full((4, 6, 3), 200, np.uint8)
        >>> cam = np.array([[-1.0, 2.0], [0.5, 4.0]])          # a 2 x 2 map: resized to 4 x 6
        >>> overlay(photo, cam).size
        (6, 4)
    """
    rgb = np.asarray(image, dtype=np.float32)[..., :3]
    h = heat.detach().float().cpu().numpy() if hasattr(heat, "detach") else np.asarray(heat, dtype=np.float32)
    h = np.asarray(h, dtype=np.float32)
    if h.ndim != 2:
        raise InvalidArgument("heat", f"overlay takes one (H, W) map, got shape {h.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise InvalidArgument("alpha", f"alpha must lie in [0, 1], not {alpha}")
    if h.shape != rgb.shape[:2]:
        h = np.asarray(Image.fromarray(h, "F").resize((rgb.shape[1], rgb.shape[0]), Image.Resampling.BILINEAR))
    if normalize != "none":
        h = normalize_maps(torch.tensor(h), normalize).clamp(0.0, 1.0).numpy()
    valid = np.isfinite(h)
    colours = matplotlib.colormaps[cmap](np.clip(np.where(valid, h, 0.0), 0.0, 1.0))[..., :3] * 255.0
    a = np.where(valid, alpha, 0.0)[..., None]
    return Image.fromarray(np.round(rgb * (1.0 - a) + colours * a).astype(np.uint8), "RGB")


def draw_box(
    image: Image.Image, box: Box, colour: str = "#00ff00", width: int = 3, *, dashed: bool = False
) -> Image.Image:
    """A copy of ``image`` with an inclusive-pixel box ``(x0, y0, x1, y1)`` outlined (``dashed`` for a window)."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    if not dashed:
        draw.rectangle(list(box), outline=colour, width=width)
        return out
    x0, y0, x1, y1 = box
    dash = max(4, 3 * width)
    for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
        for t in range(0, length, 2 * dash):
            u, v = t / max(1, length), min(1.0, (t + dash) / max(1, length))
            start = (a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u)
            end = (a[0] + (b[0] - a[0]) * v, a[1] + (b[1] - a[1]) * v)
            draw.line([start, end], fill=colour, width=width)
    return out


def score_text(p: float) -> str:
    """A probability as a percentage with three significant digits, never rounded to zero.

    Example:
        >>> score_text(0.8734), score_text(0.0123), score_text(0.0000042)
        ('87.3 %', '1.23 %', '0.00042 %')
    """
    return f"{100 * p:.3g} %" if p >= 0.001 else f"{100 * p:.2g} %"


def topk_grid(
    image: Image.Image,
    heats: Sequence[np.ndarray],
    titles: Sequence[str],
    boxes: Sequence[Box | None],
    path: str | os.PathLike,
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
    panel: int = 320,
    title: str | None = None,
    window: Box | None = None,
) -> Path:
    """The paper's Fig. 4/5: the image, then one overlay per class, titled with name and score.

    Args:
        image: the photo.
        heats: one ``float[H, W]`` map in [0, 1] per class, on the photo's pixel grid (NaN: not seen).
        titles: one title per class panel.
        boxes: one box (or None) per class, in the photo's pixels.
        path: the PNG to write (atomically).
        alpha: heat-map opacity.
        cmap: a matplotlib colour map.
        panel: the longer side of each panel in pixels (maps, boxes and the photo are shrunk alike).
        title: a line above the panels (the method and its settings).
        window: the part of the photo the model saw, outlined dashed on the input panel when it is
            not all of it.
    """
    if not len(heats) == len(titles) == len(boxes):
        raise InvalidArgument("heats", f"need one title and one box per map: {len(heats)}, {len(titles)}, {len(boxes)}")
    scale = min(1.0, panel / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.resize(size, Image.Resampling.BILINEAR)
    line = max(2, round(3 * scale))
    first = small if window is None else draw_box(small, _scaled(window, scale), "#ffffff", line, dashed=True)
    panels = [(first, "input" if window is None else "input (dashed: what the model saw)")]
    for heat, text, box in zip(heats, titles, boxes, strict=True):
        h = np.asarray(Image.fromarray(np.asarray(heat, dtype=np.float32), "F").resize(size, Image.Resampling.BILINEAR))
        shown = overlay(small, h, alpha, cmap, normalize="none")
        if box is not None:
            shown = draw_box(shown, _scaled(box, scale), width=line)
        panels.append((shown, text))
    fig = Figure(figsize=(2.6 * len(panels), 2.6 * size[1] / size[0] + (0.8 if title else 0.5)), dpi=100)
    for i, (img, text) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(img)
        ax.set_title(text, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _scaled(box: Sequence[int], scale: float) -> Box:
    x0, y0, x1, y1 = (round(v * scale) for v in box)
    return x0, y0, x1, y1


_CURVES: dict[str, tuple[str, dict[str, Any]]] = {
    "v1_50": ("MaxBoxAcc: largest contour, IoU 0.5", {"color": "black", "linestyle": "--", "linewidth": 2.2}),
    "v2_30": ("MaxBoxAccV2: all contours, IoU 0.3", {"color": "tab:green"}),
    "v2_50": ("MaxBoxAccV2: all contours, IoU 0.5", {"color": "tab:blue"}),
    "v2_70": ("MaxBoxAccV2: all contours, IoU 0.7", {"color": "tab:red"}),
}


def plot_curves(
    thresholds: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    *,
    xlabel: str = "CAM threshold τ (pixels above τ of the min-max score map are kept)",
) -> Path:
    """Localization accuracy against the CAM threshold, one line per curve, the best of each marked.

    Args:
        thresholds: the x values.
        curves: curve name (``v1_50``, ``v2_30``, ...) -> accuracy in percent at each threshold.
        path: the PNG to write (atomically).
        xlabel: what the threshold is a fraction of.
    """
    fig = curves_figure(thresholds, curves, xlabel=xlabel)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def curves_figure(
    thresholds: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    *,
    xlabel: str = "CAM threshold τ (pixels above τ of the min-max score map are kept)",
) -> Figure:
    """The figure :func:`plot_curves` saves (for other formats: SVG in the HTML report)."""
    fig = Figure(figsize=(7, 4.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for name, values in curves.items():
        label, style = _CURVES.get(name, (name, {}))
        options: dict[str, Any] = {"label": label, **style, "zorder": 3 if name == "v1_50" else 2}
        ax.plot(thresholds, values, **options)
        best = int(np.argmax(values))
        ax.plot([thresholds[best]], [values[best]], marker="o", color=options.get("color"), zorder=4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images localized (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def histogram_figure(
    values: Sequence[float], edges: Sequence[float], *, xlabel: str, marker: float | None = None
) -> Figure:
    """A histogram of ``values`` over the bins ``edges``, with a dashed line at ``marker`` (a pass mark)."""
    fig = Figure(figsize=(7, 3.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(np.asarray(values, dtype=np.float64), bins=list(edges), color="tab:blue", edgecolor="white")
    if marker is not None:
        ax.axvline(marker, color="black", linestyle="--", linewidth=1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    ax.set_xlim(edges[0], edges[-1])
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def save_image(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Save an ``uint8[H, W]`` or ``uint8[H, W, 3]`` array as an image file, creating its folder."""
    path = Path(path)
    kind = Image.registered_extensions().get(path.suffix.lower())  # the temporary file's suffix is not the format's
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(array, dtype=np.uint8)).save(tmp, format=kind)
    return path
