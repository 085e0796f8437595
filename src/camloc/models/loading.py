"""``load_model``: any model camloc can explain, by name or file, ready for inference."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from ..errors import InvalidArgument
from .files import is_model_file, load_checkpoint
from .hub import load_pretrained
from .info import model_info, with_info

__all__ = ["load_model"]


def load_model(
    name: str,
    weights: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    class_names: Sequence[str] | None = None,
) -> nn.Module:
    """A pretrained classifier in eval mode, with its class names and preprocessing attached.

    Args:
        name: a torchvision model name (``"mobilenet_v2"``, ``"resnet50"``), ``"timm:<name>"``,
            ``"hf:PATH"`` (a ``transformers`` ``save_pretrained`` folder, read offline), a factory
            ``"path/to/file.py:fn"`` / ``"package.module:fn"`` returning an ``nn.Module``, or a
            camloc model file (``MODEL.pt`` from ``camloc train`` / ``camloc probe``).
        weights: a weight file to load; torchvision and timm weights are otherwise looked up in the
            torch hub cache (and in packages that ship them), never downloaded.
        device: where to put the model (default: where it was built, the CPU).
        class_names: names that replace the model's own class names.

    Example::

        model = camloc.load_model("mobilenet_v2")     # torchvision's IMAGENET1K_V1, from disk
        camloc.model_info(model).class_name(285)      # 'Egyptian cat'
    """
    if is_model_file(name):
        if weights is not None:
            raise InvalidArgument(
                "weights", f"weights=: {name} is a camloc model file and holds its own weights", arguments=["weights"]
            )
        model = load_checkpoint(name)
        info = model_info(model)
    else:
        model, info = load_pretrained(name, weights)
    if class_names is not None:
        info = replace(info, class_names=tuple(class_names))
    model.eval()
    if device is not None:
        model.to(device)
    return with_info(model, info)
