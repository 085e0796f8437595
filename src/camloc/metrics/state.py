"""Streaming metrics as torchmetrics shapes them: declared state, each part added up across shards and processes.

A :class:`Metric` declares its state with :meth:`~Metric.add_state` (a name and a zero value: a
count, or a fixed-size array of counts); ``reset``, ``merge`` (another accumulator, e.g. of another
shard) and ``sync`` (every process of a torchrun group, through :func:`camloc.distributed.all_sum`)
then need nothing from the metric itself. The state is a sum of integers wherever it can be, so a
metric computed after ``sync`` is exactly the single-process number.
"""

from __future__ import annotations

import numpy as np

from ..distributed import all_sum

__all__ = ["Metric"]


class Metric:
    """Base of camloc's streaming metrics: ``update`` (the subclass's), ``compute``, ``reset``, ``merge``, ``sync``."""

    def __init__(self) -> None:
        self._zeros: dict[str, np.ndarray] = {}
        self._parts: list[str] = []

    def add_state(self, name: str, zero: int | float | np.ndarray) -> None:
        """Declare a part of the state, added up across shards: ``zero`` gives its type and shape."""
        self._zeros[name] = np.array(zero)
        setattr(self, name, np.array(zero))

    def add_metric(self, name: str, metric: Metric) -> None:
        """Hold another metric as part of the state: reset, merged and synced with this one."""
        self._parts.append(name)
        setattr(self, name, metric)

    def reset(self) -> None:
        """Every part of the state back to zero."""
        for name, zero in self._zeros.items():
            setattr(self, name, zero.copy())
        for name in self._parts:
            getattr(self, name).reset()

    def state(self) -> dict[str, np.ndarray]:
        """The declared state by name."""
        return {name: getattr(self, name) for name in self._zeros}

    def merge(self, other: Metric) -> None:
        """Add another accumulator's state (another shard's)."""
        for name in self._zeros:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in self._parts:
            getattr(self, name).merge(getattr(other, name))

    def sync(self) -> None:
        """Replace the state by its sum over every process of the run (nothing to do in a single process)."""
        for name, total in all_sum(self.state()).items():
            setattr(self, name, total.astype(self._zeros[name].dtype))
        for name in self._parts:
            getattr(self, name).sync()
