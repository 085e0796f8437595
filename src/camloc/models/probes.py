"""Linear probes as CAM heads (paper section 4): a linear classifier on GAP features, put in place of a model's own.

A probe is trained on a backbone's GAP vectors (:func:`camloc.training.fit_probe`); attached to
the backbone it makes a model whose CAMs map the probe's classes (paper Fig. 9). Probe files are
model files (:mod:`camloc.models.files`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..errors import InvalidArgument
from .adapter import adapt
from .info import ModelInfo, with_info

__all__ = ["LabelledVectors", "LinearProbe", "attach_probe"]


class LabelledVectors(Protocol):
    """Feature vectors with labels, e.g. :class:`camloc.training.Features`."""

    values: np.ndarray  # (N, K)
    labels: np.ndarray  # (N,)


@dataclass
class LinearProbe:
    """A linear classifier on raw GAP vectors: ``scores = weight @ gap + bias``.

    Row ``i`` scores the dataset class ``labels[i]`` (named ``class_names[i]``): the classes the
    probe was trained on, in increasing label order.
    """

    weight: torch.Tensor  # (C, K) float32
    bias: torch.Tensor  # (C,) float32
    class_names: list[str]
    labels: list[int]
    kind: str
    C: float

    def decision(self, values: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, C) class scores of raw GAP vectors (N, K), computed in float64."""
        x = torch.as_tensor(values).to("cpu", torch.float64)
        return (x @ self.weight.double().T + self.bias.double()).numpy()

    def predict(self, values: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N,) predicted dataset labels."""
        return np.asarray(self.labels, dtype=np.int64)[self.decision(values).argmax(axis=1)]

    def accuracy(self, features: LabelledVectors) -> float:
        """Percentage of ``features`` whose label the probe predicts."""
        if len(features.labels) == 0:
            raise InvalidArgument("features", "accuracy of an empty set of features")
        return float(np.mean(self.predict(features.values) == features.labels) * 100.0)


def attach_probe(model: nn.Module, probe: LinearProbe) -> nn.Module:
    """A copy of ``model`` whose linear classifier is the probe; ``model`` itself is unchanged.

    The model must end in global average pooling + one ``nn.Linear`` whose input width is the
    probe's. CAM of the copy maps the probe's classes; its ``camloc_info`` (when the model has
    one) names them.
    """
    adapter = adapt(model)
    head = adapter.classifier
    if not isinstance(head, nn.Linear):
        raise InvalidArgument(
            "model",
            f"{type(model).__name__}: a probe replaces a head of global average pooling + one nn.Linear; "
            f"this model has {adapter.description}",
        )
    width = probe.weight.shape[1]
    if head.in_features != width:
        raise InvalidArgument(
            "model",
            f"the probe takes {width} features but {type(model).__name__}'s classifier takes {head.in_features}",
        )
    name = next(n for n, m in model.named_modules() if m is head)
    new_head = nn.Linear(width, probe.weight.shape[0]).to(head.weight.device, head.weight.dtype)
    with torch.no_grad():
        new_head.weight.copy_(probe.weight)
        new_head.bias.copy_(probe.bias)
    new_model = copy.deepcopy(model)
    new_model.set_submodule(name, new_head)
    info = getattr(model, "camloc_info", None)
    if isinstance(info, ModelInfo):
        with_info(
            new_model,
            dataclasses.replace(info, name=f"{info.name} + {probe.kind} probe", class_names=tuple(probe.class_names)),
        )
    return new_model
