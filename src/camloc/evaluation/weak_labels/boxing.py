"""How a classifier's maps become scored boxes: the classes, the rule's frame, the score, CorLoc's verdicts.

Classes. Each image's boxes are of its labelled classes when the data has labels (and
``use_labels``), else of the model's ``topk`` best classes whose probability is at least
``min_score`` (:func:`class_maps`).

Frames. The box rule (:mod:`camloc.boxes.rules`) runs on each map in one pixel frame and the boxes
are then given in the image file's pixels, whatever the resize mode (:func:`frame_for`).
``squash`` (the WSOL protocol, as ``evaluate``): the raw map resized bicubically to the model's
``size`` x ``size`` input, as ``evaluate`` resizes it, the box then mapped onto the file's pixels it
covers. ``full`` and ``crop`` (as ``explain``): the map resampled onto the file's own pixels (NaN
outside the window the model saw in ``crop`` mode).

Score. A box of class ``c`` scores ``p(c) x mean over the box of max(M, 0) / max(M)``: the class's
softmax probability times how much of the box the map fills (:func:`camloc.boxes.rules.box_score`).
An image's boxes are ranked by it (:func:`ranked_boxes`).

CorLoc's verdicts (:func:`corloc_verdicts`), when the ground truth is known: for labelled classes,
one per labelled class with a ground-truth box, its top-scored box of that class against them; for
the model's classes, one per image, its top-scored box against the ground truth of its class. Judged
in the frame the rule ran in, the ground truth scaled into it as ``evaluate`` scales it
(:func:`truths_in`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ...boxes.box import Box, scale_box
from ...boxes.rules import box_score, check_rule, rule_boxes
from ...boxes.wsol import wsol_resized, wsol_resized_batch
from ...datasets.labels import Detection, ImageBoxes
from ...errors import InvalidArgument
from ...images import Batch, Geometry, Preprocess, load_batch
from ...maps.core import MapMethod
from ...maps.frames import to_image_frame
from ...metrics.detection import CorLoc
from .items import Item

__all__ = [
    "BoxSettings",
    "BoxedImage",
    "Frames",
    "PhotoFrame",
    "RuleFrame",
    "SquashFrame",
    "Work",
    "box_input",
    "box_work",
    "class_maps",
    "corloc_verdicts",
    "decode_chunk",
    "ranked_boxes",
    "frame_for",
    "truths_in",
]

SCORE_FORMULA = "p(class) x mean over the box of max(M, 0) / max(M)"

#: ``camloc boxes``' shorter side by default, where the model's own is smaller (up to twice the model's):
#: measured best in CorLoc and AP50 for ImageNet's 224-pixel models and as good as any for a model trained
#: at 448 on CUB (docs/weak-labels.md, "Input size").
BOX_SHORTER_SIDE = 448


def box_input(preprocess: Preprocess) -> Preprocess:
    """``camloc boxes``' input by default: the whole photo, shorter side ``max(own, min(448, 2 x own))``.

    A model's own shorter side (``resize_size``: 256 for torchvision's ImageNet models) gives coarse
    maps on the whole photo; 448 gives CorLoc and AP50 about five points higher at about 2.5 times
    the time, and more no better (:data:`BOX_SHORTER_SIDE`). Models whose own is at least 448 keep
    theirs; small ones are at most doubled. ``size`` is scaled alike (it sets the ``crop`` and
    ``squash`` frames, not ``full``'s).

    Example::

        >>> box_input(Preprocess(size=224, resize_size=256)).resize_size, box_input(Preprocess()).size
        (448, 392)
        >>> box_input(Preprocess(size=64, resize_size=64)).resize_size
        128
    """
    own = preprocess.resize_size
    side = max(own, min(BOX_SHORTER_SIDE, 2 * own))
    return replace(preprocess, mode="full", resize_size=side, size=round(side * preprocess.size / own))


@dataclass(frozen=True)
class BoxSettings:
    """How maps become boxes.

    Attributes:
        rule: a rule of :data:`camloc.boxes.rules.BOX_RULES`.
        threshold: tau of the rule (a fraction of the map's max; of its min-max range for ``wsol``).
        min_area: ``all`` only: the smallest component boxed, as a fraction of the map.
        topk: how many of the model's best classes, for images without a label (or ``use_labels=False``).
        min_score: the smallest class probability boxed, for the model's classes.
        use_labels: box the labelled class of images that have one.
    """

    rule: str = "paper"
    threshold: float = 0.2
    min_area: float = 0.01
    topk: int = 1
    min_score: float = 0.0
    use_labels: bool = True

    def __post_init__(self) -> None:
        check_rule(self.rule, self.threshold, self.min_area)
        if self.topk < 1:
            raise InvalidArgument("topk", f"topk must be at least 1, not {self.topk}")
        if not 0.0 <= self.min_score <= 1.0:
            raise InvalidArgument("min_score", f"min_score must lie in [0, 1], not {self.min_score}")


@dataclass
class BoxedImage:
    """One image of a run: its boxes in the file's pixels, best first, or why it could not be read.

    Attributes:
        index: its position in the run, from 0.
        image_id: the dataset's id of it (its path for plain image lists).
        path: the image file.
        width: its width in pixels, as decoded (0 when unread).
        height: its height.
        detections: its boxes, best first.
        hits: CorLoc's verdicts: one per labelled class of the image that has ground-truth boxes (its
            top box of that class), or, for the model's classes, one on its top box; None without
            ground truth.
        error: why it could not be read ("" when it was).
    """

    index: int
    image_id: str
    path: str
    width: int = 0
    height: int = 0
    detections: list[Detection] = field(default_factory=list)
    hits: list[bool] | None = None
    error: str = ""

    def image_boxes(self) -> ImageBoxes:
        """The boxes as the writers take them."""
        return ImageBoxes(self.index, self.path, self.width, self.height, self.detections)

    def record(self) -> dict:
        """The journal's line."""
        dets = [[d.label, *d.box, d.score] for d in self.detections]
        return {"i": self.index, "id": self.image_id, "p": self.path, "w": self.width, "h": self.height,
                "d": dets, "hits": self.hits, "e": self.error}  # fmt: skip

    @classmethod
    def from_record(cls, r: dict) -> BoxedImage:
        """The image a journal line records."""
        dets = [Detection(int(d[0]), (int(d[1]), int(d[2]), int(d[3]), int(d[4])), float(d[5])) for d in r["d"]]
        hits = r["hits"] if "hits" in r else None if r.get("hit") is None else [r["hit"]]  # "hit": older journals
        return cls(r["i"], r["id"], r["p"], r["w"], r["h"], dets, hits, r["e"])


def decode_chunk(
    chunk: list[Item], preprocess: Preprocess, pool: ThreadPoolExecutor
) -> tuple[list[tuple[list[Item], Batch]], list[tuple[Item, str]]]:
    """A chunk's decoded batches (one per input shape in ``full`` mode) and the items that could not be read."""
    if preprocess.mode != "full":
        batch = load_batch([it.sample.path for it in chunk], preprocess, executor=pool)
        singles = [(batch, chunk)]
    else:  # images of other shapes cannot share a tensor: decode one by one, then stack each shape's
        singles = [
            (load, [it])
            for load, it in zip(
                pool.map(lambda it: load_batch([it.sample.path], preprocess), chunk), chunk, strict=True
            )
        ]
    failed: list[tuple[Item, str]] = []
    groups: dict[tuple, tuple[list[Item], list[Batch]]] = {}
    for batch, items in singles:
        reasons = {e.path: e.reason for e in batch.errors}
        failed += [(it, reasons[str(it.sample.path)]) for it in items if str(it.sample.path) in reasons]
        good = [it for it in items if str(it.sample.path) not in reasons]  # in the order of batch.paths
        if good:
            group = groups.setdefault(tuple(batch.images.shape[1:]), ([], []))
            group[0].extend(good)
            group[1].append(batch)
    out = []
    for items, batches in groups.values():
        if len(batches) == 1:  # squash and crop: the chunk's one batch (a copy of it would cost ~0.2 ms an image)
            out.append((items, batches[0]))
            continue
        merged = Batch(
            torch.cat([b.images for b in batches]),
            [p for b in batches for p in b.paths],
            [g for b in batches for g in b.geometries],
            [],
        )
        out.append((items, merged))
    return out, failed


@dataclass
class Frames:
    """One image's maps in the frame its rule runs in, and how that frame maps onto the file's pixels."""

    maps: list[np.ndarray]
    size: tuple[int, int]  # (width, height) of the frame
    to_file: Callable[[Box], Box]


class RuleFrame:
    """The pixel frame a box rule runs in, for one resize mode (see the module docstring).

    Attributes:
        keeps_device: whether the maps stay on their device (a GPU's) for :meth:`place`.
    """

    keeps_device = False

    def gpu_resize(self, maps: torch.Tensor) -> torch.Tensor:
        """``maps`` (``Tensor[N, k, h, w]``, raw) as :meth:`place` would resize them, done on the GPU where they are.

        The default returns them as they are; a frame of fixed size resizes maps on a GPU there (its
        own resize of a map already that size is then a copy).
        """
        return maps

    def place(self, raw: torch.Tensor, geo: Geometry) -> Frames:
        """One image's maps ``raw`` (``Tensor[k, h, w]``) in this frame; ``geo``: how the image was fitted."""
        raise NotImplementedError


class SquashFrame(RuleFrame):
    """``squash``, as ``evaluate``: float64 bicubic (OpenCV) onto the model's ``size`` x ``size`` input."""

    def __init__(self, size: int) -> None:
        self.size = (size, size)

    def gpu_resize(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps on a GPU resized to the model's square there (bicubic, as :meth:`place` does); others as they are."""
        if maps.device.type != "cuda":
            return maps
        return wsol_resized_batch(maps.flatten(0, 1), self.size).view(*maps.shape[:2], self.size[1], self.size[0])

    def place(self, raw: torch.Tensor, geo: Geometry) -> Frames:
        """The maps on the model's square; boxes go back onto the file's pixels they cover."""
        return Frames([wsol_resized(m, self.size) for m in raw.double().numpy()], self.size, geo.box_to_original)


class PhotoFrame(RuleFrame):
    """``full`` and ``crop``, as ``explain``: the maps resampled onto the file's own pixels (NaN outside a crop)."""

    keeps_device = True  # resampled where they are

    def place(self, raw: torch.Tensor, geo: Geometry) -> Frames:
        """The maps on the file's pixels; boxes are already in them."""
        maps = to_image_frame(raw, geo).cpu().numpy() if len(raw) else np.empty((0, geo.height, geo.width), np.float32)
        return Frames(list(maps), (geo.width, geo.height), lambda b: b)


def frame_for(preprocess: Preprocess) -> RuleFrame:
    """The frame of ``preprocess.mode``: the model's square for ``squash``, the file's pixels otherwise."""
    return SquashFrame(preprocess.size) if preprocess.mode == "squash" else PhotoFrame()


def class_maps(
    items: list[Item], batch: Batch, method: MapMethod, settings: BoxSettings, frame: RuleFrame
) -> list[tuple[list[int], list[float], torch.Tensor, bool]]:
    """Per image: the classes to box, their probabilities, their maps ``Tensor[k, h, w]``, and whether labelled.

    Labelled: the classes are the image's labelled classes (else the model's best).

    The maps are as ``frame`` takes them: resized on the GPU where the frame does that
    (:meth:`RuleFrame.gpu_resize`), and on the CPU unless the frame keeps them on the device.
    """
    labelled = settings.use_labels and all(it.labels for it in items)
    if labelled:  # one tensor of classes: an image with fewer labels repeats its last (its maps are dropped below)
        k = max(len(it.labels) for it in items)
        wanted = [it.labels + it.labels[-1:] * (k - len(it.labels)) for it in items]
        out = method(batch.images, classes=wanted, upsample=False)
    else:
        out = method(batch.images, topk=settings.topk, upsample=False)
    raw = frame.gpu_resize(out.raw.detach().float())
    if not frame.keeps_device:
        raw = raw.cpu()
    per_image = []
    for it, classes, probs, maps in zip(items, out.classes.cpu().tolist(), out.scores.cpu().tolist(), raw, strict=True):
        if labelled:
            keep = list(range(len(it.labels)))
        else:
            keep = [j for j, p in enumerate(probs) if p >= settings.min_score]
        per_image.append(([classes[j] for j in keep], [probs[j] for j in keep], maps[keep], labelled))
    return per_image


def ranked_boxes(
    frames: Frames, classes: list[int], probs: list[float], settings: BoxSettings
) -> list[tuple[float, int, Box]]:
    """``(score, class, frame box)`` of every box the rule draws, best first."""
    found = [
        (p * box_score(m, b), c, b)
        for c, p, m in zip(classes, probs, frames.maps, strict=True)
        for b in rule_boxes(m, settings.rule, settings.threshold, settings.min_area)
    ]
    return sorted(found, key=lambda t: -t[0])


def truths_in(item: Item, geo: Geometry, frame_size: tuple[int, int]) -> list[tuple[int, Box]]:
    """The item's ground truth in the rule's frame, scaled as ``evaluate`` scales it."""
    original = item.sample.size or (geo.width, geo.height)
    return [(c, scale_box(b, original, frame_size)) for c, b in item.truths]


def corloc_verdicts(
    found: list[tuple[float, int, Box]], truths: list[tuple[int, Box]], labels: list[int] | None
) -> list[bool] | None:
    """CorLoc's verdicts on an image's ranked boxes (None without ground truth).

    ``labels``: the image's labelled classes, each judged by its own top box against the ground
    truth of its class (so an image labelled with one class is judged as ``evaluate`` judges it);
    None: the model's classes, the image's top box judged once.
    """
    if labels is None:
        hit = CorLoc.hit([(c, b) for _, c, b in found], truths)
        return None if hit is None else [hit]
    verdicts = []
    for label in labels:
        hit = CorLoc.hit([(c, b) for _, c, b in found if c == label], [t for t in truths if t[0] == label])
        if hit is not None:
            verdicts.append(hit)
    return verdicts or None


#: What a run does with each image read: ``work(item, frames, classes, probs, geometry, labelled)``.
Work = Callable[[Item, Frames, list[int], list[float], Geometry, bool], object]


def box_work(settings: BoxSettings) -> tuple[Work, Callable[[Item, str], BoxedImage]]:
    """What a run does with each image: its :class:`BoxedImage` when read, and when not (with the reason)."""

    def work(
        item: Item, frames: Frames, classes: list[int], probs: list[float], geo: Geometry, labelled: bool
    ) -> BoxedImage:
        found = ranked_boxes(frames, classes, probs, settings)
        hits = corloc_verdicts(found, truths_in(item, geo, frames.size), item.labels if labelled else None)
        detections = [Detection(c, frames.to_file(b), s) for s, c, b in found]
        return BoxedImage(item.index, item.image_id, str(item.sample.path), geo.width, geo.height, detections, hits)

    def failure(item: Item, reason: str) -> BoxedImage:
        return BoxedImage(item.index, item.image_id, str(item.sample.path), error=reason)

    return work, failure
