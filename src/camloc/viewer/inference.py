"""One model in memory, explaining one image at a time in one worker thread, for the web viewer.

Requests wait in the worker's queue (up to ``queue`` of them; more are turned away), so a second
user's upload waits its turn instead of running beside the first, and the event loop that serves
the page and its files never runs the model. The answer carries each class's raw map, small
(``h x w`` of the explained layer, float32) and sent once: the page resamples it onto the image's
pixels and applies the box rule itself, at every threshold, exactly as :func:`camloc.boxes.paper_box`
does on :func:`camloc.maps.to_image_frame`'s maps.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from ..errors import InputTooLarge, InvalidArgument
from ..evaluation.explain import describe, explain_settings, maps_at_two_sizes
from ..evaluation.run import map_preprocess
from ..images import Preprocess
from ..maps.core import MapMethod
from ..maps.registry import HEAD_METHODS, METHOD_NAMES, create_method, unknown_method
from ..models.info import ModelInfo

__all__ = ["MAX_INPUT_PIXELS", "MAX_TOPK", "Explainer", "QueueFull"]

MAX_TOPK = 20
#: The largest input the model is given: the whole photo keeps its aspect, so a long thin image
#: (a 40,000 x 20 strip is under any pixel cap) would otherwise reach it thousands of pixels long.
MAX_INPUT_PIXELS = 2_000_000


class QueueFull(Exception):
    """More requests wait for the model than the queue holds."""


class Explainer:
    """A model and its map methods (made on first use), explaining one image at a time.

    Args:
        model: the classifier, in eval mode.
        info: its name, class names and preprocessing.
        preprocess: instead of ``info.preprocess`` (the viewer uses the whole photo, ``full``).
        target_layer: the layer the methods other than CAM explain (None: the last feature map).
        queue: how many requests may wait for the model.
        map_size: read the maps at this input side, the classes and scores at ``preprocess``'s (None:
            ``info.map_size``, else one input for both; :func:`camloc.evaluation.explain.explain`).
    """

    def __init__(
        self,
        model: nn.Module,
        info: ModelInfo,
        *,
        preprocess: Preprocess | None = None,
        target_layer: str | None = None,
        queue: int = 64,
        map_size: int | None = None,
    ) -> None:
        self.model, self.info = model, info
        self.preprocess = preprocess or info.preprocess
        self.mapping = map_preprocess(self.preprocess, map_size or info.map_size)
        self.target_layer = target_layer
        self.queue = queue
        self.waiting = 0  # requests submitted and not yet answered (changed on the event loop only)
        self._methods: dict[str, MapMethod] = {}
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camloc-model")

    def method(self, name: str) -> MapMethod:
        """The map method ``name`` of the model, made once."""
        if name not in METHOD_NAMES:
            raise unknown_method(name)
        if name not in self._methods:
            layer = None if name in HEAD_METHODS else self.target_layer
            self._methods[name] = create_method(name, self.model, layer)
        return self._methods[name]

    def explain(
        self,
        image: Image.Image,
        *,
        method: str = "cam",
        topk: int = 5,
        classes: Sequence[int] | None = None,
        threshold: float | None = None,
    ) -> dict[str, Any]:
        """Maps, scores and boxes of one image, as the viewer's JSON sends them (runs the model here and now).

        Args:
            image: an upright RGB image.
            method: one of :data:`camloc.maps.METHOD_NAMES`.
            topk: how many of the best classes, when ``classes`` is None (1 to :data:`MAX_TOPK`).
            classes: these classes' maps instead (at most :data:`MAX_TOPK`).
            threshold: the box rule's fraction of each map's maximum, for the boxes sent (None: the
                model's, ``info.paper_threshold``).

        Returns:
            ``explain``'s record of the image (``width``, ``height``, ``predictions`` with boxes,
            ``window`` when the model saw part of it) and ``settings``, plus ``geometry`` (where the
            model's input lies in the image) and ``maps``: ``{"shape": [k, h, w], "data": base64 of
            float32 little-endian}``, the raw maps at the explained layer's resolution.
        """
        if not 1 <= topk <= MAX_TOPK:
            raise InvalidArgument("topk", f"topk must be between 1 and {MAX_TOPK}, not {topk}")
        if classes is not None and not 1 <= len(classes) <= MAX_TOPK:
            raise InvalidArgument("classes", f"give 1 to {MAX_TOPK} classes, not {len(classes)}")
        threshold = self.info.paper_threshold if threshold is None else threshold
        if not 0.0 <= threshold <= 1.0:
            raise InvalidArgument("threshold", f"threshold must lie in [0, 1], not {threshold}")
        planned = self.mapping.geometry(*image.size)
        if planned.input_width * planned.input_height > MAX_INPUT_PIXELS:
            raise InputTooLarge(
                f"a {image.width}x{image.height} image reaches the model as {planned.input_width}x"
                f"{planned.input_height}, over {MAX_INPUT_PIXELS:,} pixels; crop it nearer to square"
            )
        chosen = self.method(method)
        x, geometry = self.mapping(image)
        to_classify = None if self.mapping is self.preprocess else self.preprocess(image)[0][None]
        wanted = None if classes is None else [list(classes)]
        out = maps_at_two_sizes(chosen, x[None], to_classify, topk, wanted)
        record, _ = describe(out, 0, geometry, self.info, threshold)
        raw = np.ascontiguousarray(out.raw[0].float().cpu().numpy(), dtype="<f4")
        settings = explain_settings(
            chosen, self.info, self.preprocess, topk, classes, threshold, map_size=self.mapping.size
        )
        return {
            **record,
            "settings": settings,
            "geometry": {
                **dataclasses.asdict(geometry),
                "input_width": geometry.input_width,
                "input_height": geometry.input_height,
            },
            "maps": {"shape": list(raw.shape), "data": base64.b64encode(raw.tobytes()).decode("ascii")},
        }

    async def submit(self, image: Image.Image, **options: Any) -> dict[str, Any]:
        """:meth:`explain` in the model's worker thread, after the requests before it; raises QueueFull."""
        if self.waiting >= self.queue:
            raise QueueFull(f"{self.waiting} requests are waiting for the model; try again in a moment")
        self.waiting += 1
        try:
            work = functools.partial(self.explain, image, **options)
            return await asyncio.get_running_loop().run_in_executor(self._worker, work)
        finally:
            self.waiting -= 1

    def close(self) -> None:
        """Stop the worker thread (after the requests it holds)."""
        self._worker.shutdown(wait=True)
