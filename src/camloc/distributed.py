"""Many processes, one result: the process group torchrun describes, deterministic shards, exact sums.

``torchrun --nproc-per-node N -m camloc evaluate ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in their environment (one node or many);
:func:`join` makes each one a member of the process group (gloo on the CPU, NCCL on CUDA). Each rank
takes the items ``rank, rank + N, rank + 2N, ...`` (:func:`shard`), so every rank's share is known
without talking to the others, and the order of the whole is that of the items. Metric states are
added up with :func:`all_sum`: integer counts and histograms travel as int64 and add up exactly, so
a metric computed from the sums is the same number a single process gets. A process that torchrun
did not start is a world of one, where every function here costs nothing.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

__all__ = ["World", "all_gather", "all_sum", "barrier", "join", "leave", "rank_file", "shard", "world"]

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run.

    Attributes:
        rank: its index, 0 .. size - 1 (rank 0 writes the run's final files).
        size: how many processes share the run.
        local_rank: its index on its own machine (its GPU, when there are several).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process shares the run."""
        return self.size > 1


def world() -> World:
    """This process's :class:`World`: the process group's, once joined; else what torchrun's environment says."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )


def join(device: str | None = None) -> World:
    """Join the process group torchrun's environment describes (nothing to join in a world of one).

    Args:
        device: the device the model runs on; NCCL for CUDA, gloo otherwise.
    """
    import torch
    import torch.distributed as dist

    here = world()
    if not here.distributed or dist.is_initialized():
        return here
    cuda = device is not None and str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(here.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    # a group still alive when the interpreter exits can abort the process in gloo's threads
    # ("terminate called without an active exception") after all its work is done
    atexit.register(leave)
    return world()


def rank_file(path: str | os.PathLike, where: World | None = None) -> Path:
    """Where a rank keeps its own part of a file: ``path`` itself in a world of one, else ``path.rank<r>-of-<N>``."""
    where = where or world()
    path = Path(path)
    return path.with_name(f"{path.name}.rank{where.rank}-of-{where.size}") if where.distributed else path


def shard(items: Sequence[T], where: World | None = None) -> list[T]:
    """This rank's items: ``items[rank::size]``."""
    where = where or world()
    return list(items[where.rank :: where.size])


def all_sum(arrays: Mapping[str, np.ndarray | int | float]) -> dict[str, np.ndarray]:
    """Every array summed over all ranks (integers as int64, exactly; floats as float64); a world of one: copies."""
    import torch
    import torch.distributed as dist

    out = {
        k: np.array(v, dtype=np.int64 if np.issubdtype(np.asarray(v).dtype, np.integer) else np.float64)
        for k, v in arrays.items()
    }
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return out
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    for key in sorted(out):  # the same order on every rank
        t = torch.from_numpy(np.ascontiguousarray(out[key]).reshape(-1)).to(device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        out[key] = t.cpu().numpy().reshape(out[key].shape)
    return out


def all_gather(obj: object) -> list:
    """Every rank's ``obj``, in rank order (a world of one: ``[obj]``)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def leave() -> None:
    """Leave the process group, if this process joined one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (a world of one: return)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
