"""Helpers shared by the tests that build models."""

import torch
from torch import nn


def randomize_batchnorm(model: nn.Module) -> None:
    """Non-trivial running statistics, so that folding BatchNorm into convs is really exercised."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
