"""How well a trained classifier's CAM localizes: its boxes next to the best fixed centred box (wsol protocol)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..datasets.base import Dataset
from ..images import Preprocess
from ..maps.cam import CAM
from .evaluate import calibrate, evaluate

__all__ = ["assess", "inference_batch"]


def inference_batch(size: int) -> int:
    """Images per forward pass without gradients at input side ``size``: as many pixels as 64 images of 224².

    Memory then stays what it is at 224 px (a batch of 64 at 448 px needs 1.2 GB for one
    activation of MobileNetV2's second stage alone).

    >>> inference_batch(224), inference_batch(448), inference_batch(64)
    (64, 16, 784)
    """
    return max(1, 64 * 224 * 224 // (size * size))


def assess(
    model: nn.Module,
    test_set: Dataset,
    preprocess: Preprocess,
    *,
    batch_size: int | None = None,
    workers: int = 2,
    held_out: Dataset | None = None,
    map_size: int | None = None,
) -> dict:
    """Classification and localization of a trained model on ``test_set`` (wsol protocol), next to the best centred box.

    Args:
        model: a GAP classifier, whose CAM is scored.
        test_set: labelled images with boxes.
        preprocess: the model's preprocessing.
        batch_size: images per forward pass (default: :func:`inference_batch` of the input side).
        workers: threads decoding images.
        held_out: labelled images the model was not trained on; each summary then also holds
            ``"calibrated"``: the test accuracy at the thresholds (box sizes) chosen on them.
        map_size: read the maps at this input side, classify at ``preprocess.size`` (None: the same).

    Returns:
        ``{"cam": summary, "center": summary}``, the second for the best fixed centred box.
    """
    cam = CAM(model)
    batch_size = batch_size or inference_batch(max(preprocess.size, map_size or 0))
    options: dict[str, Any] = {"batch_size": batch_size, "workers": workers, "progress": False, "map_size": map_size}
    out = {}
    for name, baseline in (("cam", None), ("center", "center")):
        result = evaluate(test_set, cam, preprocess=preprocess, baseline=baseline, **options)
        if held_out is not None and len(held_out):
            val = evaluate(held_out, cam, preprocess=preprocess, baseline=baseline, **options)
            result.summary["calibrated"] = calibrate(result, val)
        out[name] = result.summary
    return out
