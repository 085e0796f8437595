"""Pictures: heat-map overlays, boxes drawn on images, the paper's top-k grid, accuracy-vs-threshold curves."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from .boxes.box import Box
from .errors import InvalidArgument
from .utils import atomic_path

__all__ = ["draw_box", "overlay", "plot_curves", "save_image", "topk_grid"]


def overlay(image: Image.Image | np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
    """Blend a colour-mapped heat map in [0, 1] over an RGB image of the same size; NaN pixels stay as they are."""
    rgb = np.asarray(image, dtype=np.float32)[..., :3]
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != rgb.shape[:2]:
        raise InvalidArgument("heat", f"heat map {heat.shape} and image {rgb.shape[:2]} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise InvalidArgument("alpha", f"alpha must lie in [0, 1], not {alpha}")
    valid = np.isfinite(heat)
    colours = matplotlib.colormaps[cmap](np.clip(np.where(valid, heat, 0.0), 0.0, 1.0))[..., :3] * 255.0
    a = np.where(valid, alpha, 0.0)[..., None]
    return Image.fromarray(np.round(rgb * (1.0 - a) + colours * a).astype(np.uint8), "RGB")


def draw_box(image: Image.Image, box: Box, colour: str = "#00ff00", width: int = 3) -> Image.Image:
    """A copy of ``image`` with an inclusive-pixel box outlined."""
    out = image.copy()
    ImageDraw.Draw(out).rectangle(list(box), outline=colour, width=width)
    return out


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
) -> Path:
    """The paper's Fig. 4/5: the image, then one overlay per class, titled with name and score.

    ``heats`` are in [0, 1] on the image's own pixel grid and ``boxes`` in its pixels; both are
    shrunk with the image so that each panel's longer side is at most ``panel`` pixels.
    """
    scale = min(1.0, panel / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.resize(size, Image.BILINEAR)
    panels = [(small, "input")]
    for heat, title, box in zip(heats, titles, boxes):
        h = np.asarray(Image.fromarray(np.asarray(heat, dtype=np.float32), "F").resize(size, Image.BILINEAR))
        shown = overlay(small, h, alpha, cmap)
        if box is not None:
            shown = draw_box(shown, tuple(round(v * scale) for v in box), width=max(2, round(3 * scale)))
        panels.append((shown, title))
    fig = Figure(figsize=(2.6 * len(panels), 2.6 * size[1] / size[0] + 0.5), dpi=100)
    for i, (img, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def plot_curves(thresholds: Sequence[float], curves: dict[str, Sequence[float]], path: str | os.PathLike) -> Path:
    """Localization accuracy against the CAM threshold, one line per curve."""
    labels = {"v1_50": "MaxBoxAcc curve (largest contour, IoU 0.5)", "v2_30": "all contours, IoU 0.3",
              "v2_50": "all contours, IoU 0.5", "v2_70": "all contours, IoU 0.7"}  # fmt: skip
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for name, values in curves.items():
        ax.plot(thresholds, values, label=labels.get(name, name))
    ax.set_xlabel("CAM threshold (fraction of the map's max)")
    ax.set_ylabel("images localized (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def save_image(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Save an (H, W[, 3]) uint8 array as an image file, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path
