"""Helpers shared by the tests that build models."""

import os
import signal
import time

import torch
from torch import nn


def randomize_batchnorm(model: nn.Module) -> None:
    """Non-trivial running statistics, so that folding BatchNorm into convs is really exercised."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def pause(x, seconds):
    """``x``, after a nap: a slow model, so that a test can kill a run half-way (kept as a call by torch.fx)."""
    time.sleep(seconds)
    return x


torch.fx.wrap("pause")


class IdentityCam(nn.Module):
    """A GAP net whose CAM of class 0 is the input's first channel and of class 1 its negative.

    With mean 0 and std 1 preprocessing the map is the image's red channel / 255: maps built by hand.
    """

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 1, 1, bias=False)
        self.fc = nn.Linear(1, 2)
        self.delay = delay
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.features(pause(x, self.delay)).mean((2, 3)))


def identity_cam() -> nn.Module:
    """Factory for ``--model tests/helpers/models.py:identity_cam``."""
    return IdentityCam().eval()


def slow_identity_cam() -> nn.Module:
    """The same, 0.15 s a forward pass."""
    return IdentityCam(delay=0.15).eval()


def die_on_rank(x, after):
    """``x``; the process of rank ``CAMLOC_TEST_DIE_RANK`` kills itself (SIGKILL) at forward pass ``after + 1``."""
    if os.environ.get("CAMLOC_TEST_DIE_RANK") == os.environ.get("RANK", "0"):
        _calls[0] += 1
        if _calls[0] > after:
            os.kill(os.getpid(), signal.SIGKILL)
    return x


_calls = [0]
torch.fx.wrap("die_on_rank")


class DyingIdentityCam(IdentityCam):
    """:class:`IdentityCam`, slow, that kills one rank of a torchrun launch half-way (see :func:`die_on_rank`)."""

    def forward(self, x):
        return super().forward(die_on_rank(pause(x, 0.1), 3))


def dying_identity_cam() -> nn.Module:
    """Factory for ``--model tests/helpers/models.py:dying_identity_cam``."""
    return DyingIdentityCam().eval()
