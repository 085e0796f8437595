"""The report's gallery pictures: each image with the map its protocol judged, the ground truth and the box.

Maps are computed again for the gallery images only (a few dozen), so a report of any run takes
seconds. Each picture shows the map as the protocol thresholded it: ``wsol``'s min-max score map,
``paper``'s map over its maximum, ``authors``' absolute map over its maximum (or, for the centred-box
baseline, the baseline's own map), resized to the image; the ground-truth boxes in green and the
protocol's box in magenta, in the image's own pixels.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..boxes.box import Box, scale_box
from ..boxes.wsol import wsol_resized, wsol_scoremap
from ..datasets.base import Sample
from ..evaluation.protocols import ImageResult, center_scoremap
from ..images import Preprocess, load_batch
from ..maps.core import MapMethod
from ..maps.frames import normalize_maps
from .figures import draw_box, overlay

__all__ = ["BOX_COLOUR", "TRUTH_COLOUR", "gallery_pictures"]

TRUTH_COLOUR = "#00e000"
BOX_COLOUR = "#ff00ff"


def gallery_pictures(
    items: Sequence[tuple[Sample, ImageResult]],
    method: MapMethod | None,
    preprocess: Preprocess,
    protocol: dict,
    *,
    side: int = 320,
    batch_size: int = 16,
    quality: int = 80,
) -> dict[str, str]:
    """One JPEG ``data:`` URI per image that can be read, by image id.

    Args:
        items: the images' ground truth and recorded results.
        method: the evaluated map method (None: pictures without a map).
        preprocess: the model's preprocessing; images are squashed to ``protocol["size"]`` as the
            evaluation did.
        protocol: the per-image file's settings: ``protocol``, ``size`` and, for a baseline run, ``baseline``.
        side: the longer side of each picture in pixels.
        batch_size: images per forward pass.
        quality: JPEG quality.
    """
    size = int(protocol.get("size", preprocess.size))
    squash = dataclasses.replace(preprocess, size=size, mode="squash")
    pictures: dict[str, str] = {}
    for start in range(0, len(items), batch_size):
        chunk = {str(s.path): (s, r) for s, r in items[start : start + batch_size]}
        batch = load_batch(list(chunk), squash, keep_originals=True)
        if not batch.paths:
            continue
        raw = None
        if method is not None and not protocol.get("baseline"):
            labels = torch.tensor([[chunk[p][0].label] for p in batch.paths])
            raw = method(batch.images, classes=labels, upsample=False).raw[:, 0].double().cpu().numpy()
        assert batch.originals is not None
        for i, path in enumerate(batch.paths):
            sample, result = chunk[path]
            photo = batch.originals[i]
            heat = _shown_map(raw[i] if raw is not None else None, protocol, size)
            box = result.box
            if box is not None and protocol.get("protocol") != "authors":
                box = batch.geometries[i].box_to_original(box)
            pictures[sample.image_id] = _jpeg_uri(_picture(photo, heat, sample.boxes, box, side), quality)
    return pictures


def _shown_map(raw: np.ndarray | None, protocol: dict, size: int) -> np.ndarray | None:
    """The map the protocol thresholded, in [0, 1] on the ``size`` x ``size`` square."""
    if protocol.get("baseline") == "center":
        return center_scoremap((size, size))
    if raw is None:
        return None
    if protocol.get("protocol") == "wsol":
        return wsol_scoremap(raw, (size, size))
    resized = wsol_resized(raw, (size, size))
    if protocol.get("protocol") == "authors":
        resized = np.abs(resized)
    return normalize_maps(torch.from_numpy(resized), "max").clamp(0.0, 1.0).numpy()


def _picture(
    photo: Image.Image, heat: np.ndarray | None, truths: Sequence[Box], box: Box | None, side: int
) -> Image.Image:
    original = photo.size
    scale = min(1.0, side / max(original))
    small_size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    small = photo.resize(small_size, Image.Resampling.BILINEAR)
    shown = small if heat is None else overlay(small, heat, alpha=0.5, normalize="none")
    line = 2
    for truth in truths:
        shown = draw_box(shown, scale_box(truth, original, small_size), TRUTH_COLOUR, line)
    if box is not None:
        shown = draw_box(shown, scale_box(box, original, small_size), BOX_COLOUR, line)
    return shown


def _jpeg_uri(image: Image.Image, quality: int) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
