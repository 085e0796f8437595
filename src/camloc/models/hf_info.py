"""What a Hugging Face ``transformers`` classifier calls its classes and how its images are prepared.

``config.id2label`` names the classes; the ``preprocessor_config.json`` saved beside the model (or a
TimmWrapper's timm data config) gives the resizing and normalization, read as camloc's
:class:`~camloc.images.Preprocess`. Nothing here imports ``transformers``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from torch import nn

from ..images import IMAGENET_MEAN, IMAGENET_STD, Preprocess, ResizeMode

__all__ = ["class_names", "native_size", "preprocess_of", "processor_preprocess", "processor_settings"]

log = logging.getLogger(__name__)


def native_size(config: Any) -> tuple[int, int] | None:
    """The configured ``(H, W)`` input size, where the config gives one (CLIP's and SigLIP's in their vision config)."""
    size = getattr(getattr(config, "vision_config", None) or config, "image_size", None)
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return (int(size[0]), int(size[1]))
    return None


def class_names(model: nn.Module) -> tuple[str, ...] | None:
    """``config.id2label`` in index order, or None when it holds only the generic ``LABEL_<i>`` names."""
    config = getattr(model, "config", None)
    labels = dict(getattr(config, "id2label", None) or {})
    count = int(getattr(config, "num_labels", len(labels)) or 0)
    if count == 0 or any(i not in labels for i in range(count)):
        return None
    names = tuple(str(labels[i]) for i in range(count))
    return None if names == tuple(f"LABEL_{i}" for i in range(count)) else names


def processor_settings(model: nn.Module) -> tuple[dict, Path] | None:
    """The ``preprocessor_config.json`` saved beside the model, and where it is.

    That is in the folder ``config._name_or_path``, or in the Hugging Face cache when that is a hub
    id (looked up on disk only).
    """
    name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    path = Path(name) / "preprocessor_config.json"
    if name and not path.is_file() and not Path(name).is_dir():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "preprocessor_config.json")
        except (ImportError, ValueError):  # no huggingface_hub, or not a repo id
            cached = None
        path = Path(cached) if isinstance(cached, str) else path
    return (json.loads(path.read_text()), path) if name and path.is_file() else None


def preprocess_of(model: nn.Module) -> Preprocess:
    """The model's preprocessing: its ``preprocessor_config.json``, a TimmWrapper's timm data config, else ImageNet's.

    Without either, ImageNet's normalization at the config's ``image_size`` (224 when it has none).
    """
    config = getattr(model, "config", None)
    found = processor_settings(model)
    if found is not None:
        settings, path = found
        if settings.get("do_flip_channel_order") and not getattr(model, "camloc_flips_channels", False):
            log.warning("%s: the processor flips RGB to BGR, which camloc does not; load the model as hf:FOLDER", path)
        return processor_preprocess(settings)
    timm_cfg = getattr(config, "pretrained_cfg", None)
    if isinstance(timm_cfg, dict) and "input_size" in timm_cfg:  # TimmWrapper keeps timm's data config in config.json
        side = int(timm_cfg["input_size"][-1])
        interpolation = str(timm_cfg.get("interpolation"))
        mean, std = timm_cfg.get("mean") or IMAGENET_MEAN, timm_cfg.get("std") or IMAGENET_STD
        return Preprocess(
            size=side,
            resize_size=int(side / float(timm_cfg.get("crop_pct") or 0.875)),
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
            interpolation=interpolation if interpolation in _MODES else "bicubic",
        )
    size = native_size(config)
    return Preprocess(size=size[0], resize_size=size[0] * 256 // 224) if size is not None else Preprocess()


_MODES = ("nearest", "bilinear", "bicubic")


_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "bicubic", 4: "bilinear", 5: "bilinear"}  # PIL codes


def processor_preprocess(settings: dict) -> Preprocess:
    """The camloc :class:`~camloc.images.Preprocess` nearest to an image processor's saved settings.

    ``size`` ``{"height", "width"}``: the image resized whole (``squash``), then centre-cropped when
    ``crop_size`` is smaller (as ``crop``); ``{"shortest_edge"}``: the shorter side resized, then the
    centre crop (ConvNeXt's ``crop_pct`` and LeViT's 256/224 rule applied), as torchvision does.
    ``image_mean`` / ``image_std`` normalize (none when ``do_normalize`` is false, or absent from
    MobileViT's, whose processors do not normalize by default). A flip of the
    channels (``do_flip_channel_order``) is not preprocessing here: see :func:`loaded`.

    >>> vit = processor_preprocess({"image_processor_type": "ViTImageProcessor", "size": {"height": 384, "width": 384},
    ...                             "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3})
    >>> vit.size, vit.mode, vit.mean, vit.interpolation
    (384, 'squash', (0.5, 0.5, 0.5), 'bicubic')
    >>> convnext = processor_preprocess({"image_processor_type": "ConvNextImageProcessor",
    ...                                  "size": {"shortest_edge": 224}, "crop_pct": 0.875, "resample": 3})
    >>> convnext.size, convnext.resize_size, convnext.mode
    (224, 256, 'crop')
    """
    kind = str(settings.get("image_processor_type", ""))
    mode: ResizeMode
    size = settings.get("size", 224)
    if isinstance(size, int):
        size = {"shortest_edge": size} if kind.startswith("ConvNext") else {"height": size, "width": size}
    crop = settings.get("crop_size") if settings.get("do_center_crop", False) else None
    crop_side = min(crop.values()) if isinstance(crop, dict) and crop else (crop if isinstance(crop, int) else None)
    if "shortest_edge" in size:
        edge = int(size["shortest_edge"])
        if kind.startswith("ConvNext"):
            pct = float(settings.get("crop_pct") or 224 / 256)
            resized, side, mode = (int(edge / pct), edge, "crop") if edge < 384 else (edge, edge, "squash")
        else:
            resized = int(256 / 224 * edge) if kind.startswith("Levit") else edge
            side, mode = crop_side or edge, "crop"
    else:
        resized = int(min(size.get("height", 224), size.get("width", 224)))
        side, mode = (crop_side, "crop") if crop_side and crop_side < resized else (resized, "squash")
    normalize = settings.get("do_normalize", not kind.startswith("MobileViT"))  # absent: the class's default
    mean = tuple(settings.get("image_mean") or IMAGENET_MEAN) if normalize else (0.0, 0.0, 0.0)
    std = tuple(settings.get("image_std") or IMAGENET_STD) if normalize else (1.0, 1.0, 1.0)
    return Preprocess(
        size=int(side),
        resize_size=int(resized),
        mode=mode,
        mean=mean,
        std=std,
        interpolation=_RESAMPLE.get(int(settings.get("resample", 2)), "bilinear"),
    )
