"""Where training batches come from: augmented images, or crops of the frozen layers' output computed once.

Both sources draw an epoch's order and every augmentation from a generator seeded with
``(seed, epoch)``, up front, so a batch does not depend on thread timing and a resumed run sees
what the uninterrupted one saw. Each keeps the unreadable images it met in :attr:`skipped`; neither
holds the network it feeds.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..datasets.base import Sample
from ..distributed import World, all_gather
from ..errors import BadImage, InvalidArgument
from ..evaluation.assess import inference_batch
from ..images import Preprocess, load_batch, open_image
from ..utils import TarMember, model_device
from ..utils import progress as progress_bar
from .config import TrainConfig
from .parallel import part

__all__ = ["Batch", "Decoded", "FrozenMaps", "Images", "Source", "hidden", "hide_draws"]

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor] | None  # (inputs, labels), or None for a step with fewer than 2 images


class Source(Protocol):
    """Training batches, epoch by epoch.

    Attributes:
        count: the images an epoch goes over.
        seconds: the time spent preparing, before the first epoch.
        skipped: the unreadable images met so far: image id -> ``{"image_id", "path", "error"}``.
    """

    count: int
    seconds: float
    skipped: dict[str, dict]

    def batches(self, epoch: int, steps: int) -> Iterator[Batch]:
        """This process's ``steps`` batches of epoch ``epoch`` (0-based)."""
        ...


class Images:
    """Training batches of augmented images: a random crop and flip of every image, drawn anew every epoch.

    The next batch is decoded (or taken from ``decoded``), cropped and normalized in ``pool``'s
    threads while the current one trains. Unreadable images are left out of their batch and
    recorded in :attr:`skipped`.
    """

    seconds = 0.0  # no preparation before the first epoch

    def __init__(
        self, samples: Sequence[Sample], config: TrainConfig, pool: ThreadPoolExecutor, decoded: Decoded, here: World
    ) -> None:
        self.samples, self.config, self.pool, self.decoded, self.here = samples, config, pool, decoded, here
        self.count = len(samples)
        self.preprocess = config.preprocess()
        self.skipped: dict[str, dict] = {}

    def batches(self, epoch: int, steps: int) -> Iterator[Batch]:
        """This process's ``steps`` batches of epoch ``epoch``: ``(Tensor[B, 3, size, size], Tensor[B])`` each."""
        config, samples = self.config, self.samples
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(len(samples))
        # Every augmentation draw is made here, up front, so it does not depend on thread timing.
        crops = rng.random((len(samples), 4))
        flips = rng.random(len(samples)) < 0.5 if config.hflip else np.zeros(len(samples), bool)
        shown = hide_draws(rng, len(samples), config)

        size = config.batch_size * self.here.size  # the global batch

        def load(b: int) -> tuple[np.ndarray, list]:
            idx = part(order[b * size : (b + 1) * size], self.here)
            return idx, [
                self.pool.submit(_augmented, self.decoded, samples[i], crops[i], flips[i], config, self.preprocess)
                for i in idx
            ]

        pending = load(0)
        for b in range(steps):
            idx, loading = pending
            if b + 1 < steps:
                pending = load(b + 1)  # prepared while this batch trains
            images, labels, kept = [], [], []
            for i, item in zip(idx, (f.result() for f in loading), strict=True):
                if isinstance(item, BadImage):
                    self._skip(samples[i], item.reason)
                    continue
                images.append(item)
                labels.append(samples[i].label)
                kept.append(i)
            if len(images) < 2:
                yield None
                continue
            yield hidden(torch.stack(images), shown, kept), torch.tensor(labels)

    def _skip(self, sample: Sample, reason: str) -> None:
        self.skipped.setdefault(
            sample.image_id, {"image_id": sample.image_id, "path": str(sample.path), "error": reason}
        )


class FrozenMaps:
    """Training batches of the frozen layers' output, computed once per image (``augment="features"``).

    Every training image is squashed to the input size and, with ``hflip``, mirrored; ``first`` (the
    frozen part of the network, up to ``config.freeze``) runs once on each, in eval mode, and its
    output is kept in memory as float16. An epoch then takes, per image, one of its views and a
    random crop of it (a window of ``[sqrt(min_scale), 1]`` of each side, one size per batch), for
    the layers after the cut: the frozen part costs one forward pass per image and view instead of
    one per image and epoch.
    """

    def __init__(
        self,
        first: nn.Module,
        samples: Sequence[Sample],
        config: TrainConfig,
        pool: ThreadPoolExecutor,
        show: bool | None,
        here: World,
    ) -> None:
        began = time.perf_counter()
        self.config, self.here = config, here
        self.skipped: dict[str, dict] = {}
        parts = self._computed(first, samples, pool, show)
        if here.distributed:  # every process keeps all of them, in the order one process makes
            parts = sorted((part for rank_parts in all_gather(parts) for part in rank_parts), key=lambda p: p[0])
        labels = [label for _, _, chunk_labels in parts for label in chunk_labels]
        if len(labels) < 2:
            raise InvalidArgument("train_set", f"a training set needs at least 2 readable images, found {len(labels)}")
        self.maps = torch.cat([m for _, m, _ in parts])  # [N, views, C, h, w]
        self.labels = torch.tensor(labels)
        self.count = len(labels)
        self.seconds = time.perf_counter() - began
        log.info(
            "frozen layers up to %s: %d images x %d views, %.0f MiB, %.1f s",
            config.freeze, self.count, self.maps.shape[1], self.maps.numel() * 2 / 2**20, self.seconds,
        )  # fmt: skip

    def _computed(
        self, first: nn.Module, samples: Sequence[Sample], pool: ThreadPoolExecutor, show: bool | None
    ) -> list[tuple[int, torch.Tensor, list[int]]]:
        """``(first sample, maps, labels)`` of each chunk of images this process computes."""
        config, here = self.config, self.here
        preprocess = config.preprocess()
        device = model_device(first)
        modes = [(m, m.training) for m in first.modules()]  # restored as they were, module by module
        first.eval()
        parts: list[tuple[int, torch.Tensor, list[int]]] = []
        size = min(config.batch_size, inference_batch(config.size))  # images per forward pass
        starts = range(0, len(samples), size)[here.rank :: here.size]  # this process's chunks
        try:
            with torch.no_grad(), progress_bar(len(samples), desc="frozen layers", enabled=show, leave=False) as bar:
                for start in starts:
                    chunk = samples[start : start + size]
                    batch = load_batch([s.path for s in chunk], preprocess, executor=pool)
                    by_path = {str(s.path): s for s in chunk}
                    for err in batch.errors:
                        sample = by_path[err.path]
                        self.skipped.setdefault(
                            sample.image_id, {"image_id": sample.image_id, "path": err.path, "error": err.reason}
                        )
                    if batch.paths:
                        x = batch.images.to(device).contiguous(memory_format=torch.channels_last)
                        views = [x, x.flip(-1)] if config.hflip else [x]
                        chunk_maps = torch.stack([first(v).half() for v in views], dim=1).cpu()
                        parts.append((start, chunk_maps, [by_path[p].label for p in batch.paths]))
                    bar.update(len(chunk) * here.size)
        finally:
            for module, training in modes:
                module.train(training)
        return parts

    def batches(self, epoch: int, steps: int) -> Iterator[Batch]:
        """This process's ``steps`` batches of epoch ``epoch``: crops of the kept maps, ``Tensor[B, C, h', w']``."""
        config = self.config
        n, views, _, h, w = self.maps.shape
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(n)
        view = rng.integers(0, views, n)
        sides = np.sqrt(config.min_scale) + (1.0 - np.sqrt(config.min_scale)) * rng.random(steps)
        offsets = rng.random((n, 2))
        shown = hide_draws(rng, n, config)
        size = config.batch_size * self.here.size  # the global batch
        for b in range(steps):
            idx = part(order[b * size : (b + 1) * size], self.here)
            ch, cw = max(1, round(h * sides[b])), max(1, round(w * sides[b]))
            tops = (offsets[idx, 0] * (h - ch + 1)).astype(int)
            lefts = (offsets[idx, 1] * (w - cw + 1)).astype(int)
            crops = [
                self.maps[i, v, :, t : t + ch, left : left + cw]
                for i, v, t, left in zip(idx, view[idx], tops, lefts, strict=True)
            ]
            yield hidden(torch.stack(crops).float(), shown, idx), self.labels[idx]


def hide_draws(rng: np.random.Generator, n: int, config: TrainConfig) -> np.ndarray | None:
    """Which cells of each image's hide grid stay visible this epoch (``bool[n, g, g]``), None without hiding."""
    if not config.hide:
        return None
    return rng.random((n, config.hide_grid, config.hide_grid)) >= config.hide


def hidden(x: torch.Tensor, shown: np.ndarray | None, rows: Sequence[int] | np.ndarray) -> torch.Tensor:
    """``x`` (``Tensor[N, C, H, W]``) with the hidden cells of its images' grids (``shown[rows]``) set to zero."""
    if shown is None:
        return x
    keep = torch.from_numpy(shown[np.asarray(rows)]).to(x.dtype)[:, None]
    return x * F.interpolate(keep, size=x.shape[-2:], mode="nearest")


class Decoded:
    """Training images decoded once and kept while they fit in ``budget`` bytes (as RGB pixels).

    A training set that fits is read from disk once, not once per epoch.
    """

    def __init__(self, budget: int) -> None:
        self.budget, self.used = budget, 0
        self.images: dict[str, Image.Image | BadImage] = {}
        self.lock = threading.Lock()

    def get(self, path: Path | TarMember) -> Image.Image | BadImage:
        """The decoded image at ``path`` (from memory when kept), or the error reading it."""
        key = str(path)
        item = self.images.get(key)
        if item is None:
            try:
                item = open_image(path)
            except BadImage as err:
                item = err
            size = 0 if isinstance(item, BadImage) else 3 * item.width * item.height
            with self.lock:
                if key not in self.images and self.used + size <= self.budget:
                    self.images[key] = item
                    self.used += size
        return item


def _augmented(
    decoded: Decoded, sample: Sample, draw: np.ndarray, flip: bool, config: TrainConfig, preprocess: Preprocess
) -> torch.Tensor | BadImage:
    """A random crop (area in [min_scale, 1], aspect in [3/4, 4/3]) squashed to size, maybe mirrored."""
    im = decoded.get(sample.path)
    if isinstance(im, BadImage):
        return im
    w, h = im.size
    area = w * h * (config.min_scale + (1.0 - config.min_scale) * draw[0])
    aspect = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * draw[1])
    cw = min(w, max(1, round(math.sqrt(area * aspect))))
    ch = min(h, max(1, round(math.sqrt(area / aspect))))
    left = int(draw[2] * (w - cw + 1))
    top = int(draw[3] * (h - ch + 1))
    side = preprocess.size
    im = im.resize((side, side), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return preprocess.to_tensor(im)
