"""Training under torchrun: each process's part of a global batch, its gradient all-reduced, its finds gathered.

Every process draws the same global order and augmentations (those one process draws) and takes the
``rank``-th of ``size`` nearly equal runs of each global batch of ``size x batch_size`` images. The
network is wrapped in DistributedDataParallel, whose all-reduce makes each step's gradient that of
the whole global batch. In a world of one process every function here is the identity, or nearly.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ..distributed import World, all_gather, all_sum
from ..utils import model_device

__all__ = ["agree", "gathered", "parallel", "part", "steps_per_epoch"]


def steps_per_epoch(n: int, batch_size: int, processes: int = 1) -> int:
    """Steps over ``n`` images in global batches of ``batch_size``: a last partial batch counts if BatchNorm can use it.

    >>> steps_per_epoch(26, 10, processes=2), steps_per_epoch(23, 10, processes=2), steps_per_epoch(21, 10)
    (3, 2, 2)
    """
    full, rest = divmod(n, batch_size)
    # a 1-image batch would break BatchNorm's training statistics: each process needs 2
    return full + (1 if rest >= 2 * processes else 0)


def part(idx: np.ndarray, here: World) -> np.ndarray:
    """This process's part of a global batch: the ``rank``-th of ``size`` nearly equal runs."""
    return np.array_split(idx, here.size)[here.rank] if here.distributed else idx


def agree(kept: int, here: World) -> tuple[int, bool]:
    """The images of this step over all processes, and whether every process has the 2 that BatchNorm needs."""
    if not here.distributed:
        return kept, kept >= 2
    kept_and_short = all_sum({"counts": np.array([kept, int(kept < 2)])})["counts"]  # one all-reduce a step
    return int(kept_and_short[0]), not int(kept_and_short[1])


def parallel(net: nn.Module, here: World) -> nn.Module:
    """``net`` in DistributedDataParallel when this is one of several processes, else ``net``."""
    if not here.distributed:
        return net
    device = model_device(net)
    ids = [device] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids)


def gathered(skipped: dict[str, dict]) -> dict[str, dict]:
    """Every process's unreadable images (by image id), in one dict; a single process: ``skipped`` itself."""
    parts = all_gather(skipped)
    if len(parts) == 1:
        return skipped
    return {k: v for part in parts for k, v in sorted(part.items())}
