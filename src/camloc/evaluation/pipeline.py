"""The shape of every run over data: decode a batch, run the model on it, finish each image; overlapped.

:func:`overlapped` runs ``decode`` of chunk i + 1 in the background while chunk i is in the forward
pass, and ``finish`` (box work, files) of chunk i while chunk i + 1 is in the forward pass; results
come out per chunk, in order. At most ``ahead + 2`` chunks are alive at once, so memory stays flat.
The background threads run at a lower scheduling priority (``nice``) than the forward pass, so on a
machine with few cores they fill the gaps the forward pass leaves instead of stalling its threads.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["BACKGROUND", "background_pool", "overlapped"]

#: The background threads' priority: a nice value, or ``"idle"`` (Linux's SCHED_IDLE: only time no
#: other thread wants). evaluate and boxes read it at each run.
BACKGROUND: int | str = 5

C = TypeVar("C")
D = TypeVar("D")
F = TypeVar("F")
R = TypeVar("R")


def _lower_priority(nice: int | str) -> None:
    try:  # on Linux a thread is a task of its own: these set this thread's priority only
        if nice == "idle" and hasattr(os, "sched_setscheduler"):
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
        elif isinstance(nice, int) and nice and hasattr(os, "setpriority"):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        pass


def background_pool(workers: int, nice: int | str = 0) -> ThreadPoolExecutor:
    """A thread pool whose threads run at ``nice`` (0: the process's own priority)."""
    return ThreadPoolExecutor(max(1, workers), initializer=_lower_priority, initargs=(nice,))


def overlapped(
    chunks: Iterable[C],
    decode: Callable[[C], D],
    forward: Callable[[D], F],
    finish: Callable[[D, F], R],
    *,
    ahead: int = 1,
    nice: int | str = 0,
) -> Iterator[R]:
    """``finish(d, forward(d))`` for ``d = decode(chunk)`` of each chunk, in order, the three stages overlapped.

    ``forward`` runs in the calling thread; ``decode`` and ``finish`` each in a thread of their own
    (they may use a pool of their own for per-image parallelism). An exception in any stage stops
    the run and is raised here.

    Args:
        chunks: the work, in order.
        decode: chunk -> what the forward pass takes (read and preprocess images).
        forward: runs the model.
        finish: what is made of a chunk once its forward pass is done (boxes, metrics, files).
        ahead: how many chunks are decoded ahead of the forward pass.
        nice: the background threads' scheduling priority relative to the forward pass.
    """
    todo = iter(chunks)
    with background_pool(1, nice) as reader, background_pool(1, nice) as finisher:
        decoding: deque[Future] = deque()

        def read_more() -> None:
            for chunk in todo:
                decoding.append(reader.submit(decode, chunk))
                return

        for _ in range(max(1, ahead)):
            read_more()
        finishing: Future | None = None
        while decoding:
            decoded = decoding.popleft().result()
            read_more()
            output = forward(decoded)
            if finishing is not None:
                yield finishing.result()
            finishing = finisher.submit(finish, decoded, output)
        if finishing is not None:
            yield finishing.result()
