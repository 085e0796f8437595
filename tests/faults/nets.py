"""Small models for the fault tests, loaded by the command line as ``--model tests/faults/nets.py:FACTORY``."""

import os

import torch
from torch import nn

from tests.helpers.models import pause

torch.fx.wrap("pause")  # kept as a call in the traced graph of this module too

CLASSES = 8


class Tiny(nn.Module):
    """A GAP net of 8 classes with fixed random weights; ``delay`` seconds a forward pass (to kill a run half-way)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.features = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, CLASSES)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        self.delay = delay

    def forward(self, x):
        return self.fc(torch.relu(self.features(pause(x, self.delay))).mean((2, 3)))


def tiny() -> nn.Module:
    """The net, as fast as it goes; ``CAMLOC_TEST_DELAY`` seconds a forward pass when that is set."""
    return Tiny(float(os.environ.get("CAMLOC_TEST_DELAY", "0"))).eval()
