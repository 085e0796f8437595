"""``evaluate_map_metrics`` and ``evaluate_sanity``: maps judged on a dataset, method by method.

``evaluate_map_metrics``: pointing games, relevance mass / rank and ROAD; ``evaluate_sanity``: the
sanity checks of :mod:`camloc.metrics.sanity` (model parameter and data randomisation).

The metrics are in :mod:`camloc.metrics.groundtruth` and :mod:`camloc.metrics.road`, with their
definitions and sources. A run writes one CSV row per image (every method's scores side by side)
through the :class:`~camloc.evaluation.run.Run` harness, so it resumes after a kill and runs
under torchrun; the dataset means are computed from the rows, so a resumed run's means are the
same as an uninterrupted one's. ROAD's noise is drawn from a generator seeded with the image's
position in the dataset, so it does not depend on batches, processes or resumption.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..distributed import all_gather, shard, world
from ..errors import InvalidArgument
from ..images import Geometry, Preprocess, load_batch
from ..maps.core import MapMethod, output_tensor
from ..metrics.faithfulness import Model
from ..metrics.groundtruth import energy_pointing_game, pointing_game, relevance_mass, relevance_rank
from ..metrics.road import ROAD_PERCENTILES, road
from ..metrics.sanity import ORDERS, SEED, SIMILARITIES, data_randomisation, model_randomisation, randomisation_layers
from ..utils import model_device
from ..utils import progress as progress_bar
from .run import Run

__all__ = [
    "LOCALIZATION_KEYS",
    "ROAD_KEYS",
    "MapMetricsResult",
    "SanityResult",
    "evaluate_map_metrics",
    "evaluate_sanity",
    "input_boxes",
]

LOCALIZATION_KEYS = (
    "pointing_game",
    "pointing_game_tolerant",
    "energy_pointing_game",
    "relevance_mass",
    "relevance_rank",
)
ROAD_KEYS = ("road_morf", "road_lerf", "road_combined")


@dataclass
class MapMetricsResult:
    """What :func:`evaluate_map_metrics` returns.

    Attributes:
        summary: method -> ``{"images": n, metric: mean over the images where it is defined, or None}``.
        config: the run's settings.
        skipped: one ``{"image_id", "path", "error"}`` per file that could not be read.
    """

    summary: dict[str, dict]
    config: dict = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        """The JSON report: ``"kind": "metrics"``, the config's keys, ``"methods"`` (the summary) and ``"skipped"``."""
        return {"kind": "metrics", **self.config, "methods": self.summary, "skipped": self.skipped}


def input_boxes(boxes: Sequence[Sequence[int]], geometry: Geometry) -> Tensor:
    """Inclusive boxes of the original image as boxes of the model's input, ``Tensor[n, 4]``.

    Each box becomes the input pixels it overlaps, cut at the input's edges; a box outside the
    input (cropped away) is dropped.

    Example:
        >>> g = Geometry(width=400, height=200, size=224, resized_width=448, resized_height=224, left=112, top=0)
        >>> input_boxes([(0, 0, 99, 99), (100, 50, 299, 149), (350, 0, 399, 10)], g).tolist()
        [[0, 56, 223, 167]]
    """
    rw, rh, w, h = geometry.resized_width, geometry.resized_height, geometry.width, geometry.height
    iw, ih = geometry.input_width, geometry.input_height
    out = []
    for x0, y0, x1, y1 in boxes:
        ix0 = x0 * rw // w - geometry.left
        iy0 = y0 * rh // h - geometry.top
        ix1 = -(-(x1 + 1) * rw // w) - 1 - geometry.left  # ceil division
        iy1 = -(-(y1 + 1) * rh // h) - 1 - geometry.top
        if ix1 < 0 or iy1 < 0 or ix0 >= iw or iy0 >= ih:
            continue
        out.append((max(ix0, 0), max(iy0, 0), min(ix1, iw - 1), min(iy1, ih - 1)))
    return torch.tensor(out, dtype=torch.long).reshape(-1, 4)


def _columns(methods: Iterable[str], keys: Sequence[str]) -> list[str]:
    return ["image_id", "label", "class"] + [f"{m}.{k}" for m in methods for k in keys]


def _cell(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def _number(cell: str) -> float:
    return float(cell) if cell else math.nan


def evaluate_map_metrics(
    samples: Iterable,
    model: Model,
    methods: Mapping[str, MapMethod],
    preprocess: Preprocess,
    *,
    per_image: str | os.PathLike | None = None,
    resume: bool = False,
    target: Literal["predicted", "label"] = "label",
    tolerance: float = 15,
    with_road: bool = True,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    batch_size: int = 16,
    workers: int = 2,
    config: dict | None = None,
    progress: bool | None = None,
) -> MapMetricsResult:
    """Every method's ground-truth and ROAD scores on the samples (``.image_id``, ``.path``, ``.label``, ``.boxes``).

    Each batch is decoded once; every method explains the same class of an image, the dataset
    label (``target="label"``, default: the boxes are the label's) or the model's top-1. A method is
    called ``method(images, classes=...)`` and its upsampled maps are judged in the model's input
    frame, the boxes mapped there (:func:`input_boxes`). ``pointing_game`` has no tolerance,
    ``pointing_game_tolerant`` ``tolerance`` pixels (TorchRay's 15). ROAD (``with_road``) costs
    ``2 * len(percentiles) + 1`` forward passes and ``2 * len(percentiles)`` sparse solves per image and method.

    Args:
        samples: the images, with their labels and boxes.
        model: the classifier the methods explain (ROAD scores its logits).
        methods: name -> map method.
        preprocess: how the files become the model's input.
        per_image: the per-image CSV (one row per image, ``METHOD.METRIC`` columns); None: none.
        resume: continue the run recorded in ``per_image``.
        target: ``"label"`` or ``"predicted"``: the class explained and scored.
        tolerance: the tolerant pointing game's radius, in input pixels.
        with_road: compute ROAD too.
        percentiles: ROAD's percentiles.
        batch_size: images per batch.
        workers: threads for decoding.
        config: settings recorded with the rows and in the result (the model's name, the data).
        progress: show a progress bar (default: on a terminal).

    Returns:
        The dataset means per method, the settings and the unreadable files.
    """
    if target not in ("predicted", "label"):
        raise InvalidArgument("target", f"target must be 'predicted' or 'label', not {target!r}")
    keys = LOCALIZATION_KEYS + (ROAD_KEYS if with_road else ())
    settings = {
        **(config or {}),
        "target": target,
        "tolerance": tolerance,
        "road_percentiles": list(percentiles) if with_road else None,
        "methods": list(methods),
        "preprocess": repr(preprocess),
    }
    scoring = _Scoring(keys, target, tolerance, with_road, tuple(percentiles))
    run = Run(per_image, "metrics", settings, columns=_columns(methods, keys), resume=resume)

    def score(images: Tensor, read: list[tuple[int, Any]], geometries: list[Geometry]) -> list[dict]:
        return _score_batch(model, methods, images, read, geometries, scoring)

    everything, skipped = _over_batches(samples, run, preprocess, model, score, batch_size, workers, progress)
    summary = {name: _means(everything, name, keys) for name in methods}
    return MapMetricsResult(summary, {**settings, "images": len(everything)}, skipped)


def _over_batches(
    samples: Iterable,
    run: Run,
    preprocess: Preprocess,
    model: Model,
    score: Callable[[Tensor, list[tuple[int, Any]], list[Geometry]], list[dict]],
    batch_size: int,
    workers: int,
    progress: bool | None,
) -> tuple[list[dict], list[dict]]:
    """Every image's record, the journal's first (resumed), then ``score``'s of this process's batches, gathered.

    ``score(images, read, geometries)`` gets a decoded batch on the model's device and its
    (position in the run, sample) pairs; returns one record per image, written to the journal.
    Returns all processes' records and unreadable files, in the run's order.
    """
    everyone = list(samples)
    position = {s.image_id: i for i, s in enumerate(everyone)}
    rows = list(run.done())
    done = {r["image_id"] for r in rows}
    mine = [(i, s) for i, s in shard(list(enumerate(everyone))) if s.image_id not in done]
    skipped: list[tuple[int, dict]] = []
    bar = progress_bar(len(mine), desc="images", enabled=progress if world().is_main else False)
    device = model_device(model)
    with run, ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(mine), batch_size):
            chunk = mine[start : start + batch_size]
            batch = load_batch([s.path for _, s in chunk], preprocess, executor=pool)
            by_path = {str(s.path): (i, s) for i, s in chunk}
            for err in batch.errors:
                i, s = by_path[err.path]
                skipped.append((i, {"image_id": s.image_id, "path": err.path, "error": err.reason}))
            if batch.paths:
                new = score(batch.images.to(device), [by_path[p] for p in batch.paths], batch.geometries)
                for row in new:
                    run.write(row)
                run.flush()
                rows.extend(new)
            bar.update(len(chunk))
    bar.close()
    run.merge(key=lambda record: position[record["image_id"]])
    everything = sorted((r for part in all_gather(rows) for r in part), key=lambda r: position[r["image_id"]])
    gathered = sorted((e for part in all_gather(skipped) for e in part), key=lambda t: t[0])
    return everything, [e for _, e in gathered]


@dataclass(frozen=True)
class _Scoring:
    """What every batch is scored with."""

    keys: tuple[str, ...]
    target: str
    tolerance: float
    with_road: bool
    percentiles: tuple[float, ...]


def _score_batch(
    model: Model,
    methods: Mapping[str, MapMethod],
    images: Tensor,
    read: list[tuple[int, Any]],
    geometries: list[Geometry],
    scoring: _Scoring,
) -> list[dict]:
    """One row per image of the batch (``read``: its (position, sample) pairs): every method's scores, as CSV cells."""
    keys, target, tolerance, with_road, percentiles = (
        scoring.keys, scoring.target, scoring.tolerance, scoring.with_road, scoring.percentiles
    )  # fmt: skip
    device = images.device
    if target == "label":
        classes = torch.tensor([s.label for _, s in read], device=device)
    else:
        with torch.no_grad():
            classes = output_tensor(model(images)).argmax(dim=1)
    boxes = [input_boxes(s.boxes, g) for (_, s), g in zip(read, geometries, strict=True)]
    rows = [
        {"image_id": s.image_id, "label": s.label, "class": int(c)} for (_, s), c in zip(read, classes, strict=True)
    ]
    for name, method in methods.items():
        out = method(images, classes=classes[:, None])
        assert out.maps is not None  # upsampled: the call asks for them
        maps = out.maps[:, 0].detach().float()
        scores = {
            "pointing_game": pointing_game(maps, boxes),
            "pointing_game_tolerant": pointing_game(maps, boxes, tolerance=tolerance),
            "energy_pointing_game": energy_pointing_game(maps, boxes),
            "relevance_mass": relevance_mass(maps, boxes),
            "relevance_rank": relevance_rank(maps, boxes),
        }
        if with_road:
            # one image at a time, its noise seeded by its position: the same whatever the batch or process
            per_image = [
                road(model, images[k : k + 1], maps[k : k + 1], classes[k : k + 1], percentiles=percentiles,
                     generator=torch.Generator().manual_seed(i))
                for k, (i, _) in enumerate(read)
            ]  # fmt: skip
            scores.update({key: torch.cat([r[key] for r in per_image]) for key in ROAD_KEYS})
        for k, row in enumerate(rows):
            row.update({f"{name}.{key}": _cell(float(scores[key][k])) for key in keys})
    return rows


def _means(rows: list[dict], method: str, keys: Sequence[str]) -> dict:
    out: dict = {"images": len(rows)}
    for key in keys:
        values = [v for v in (_number(str(r.get(f"{method}.{key}", ""))) for r in rows) if not math.isnan(v)]
        out[key] = sum(values) / len(values) if values else None
    return out


# --- sanity checks ---------------------------------------------------------------------------------------------


@dataclass
class SanityResult:
    """What :func:`evaluate_sanity` returns.

    Attributes:
        summary: ``"cascading"`` / ``"independent"`` -> method -> layer -> similarity -> mean over
            the images where it is defined (None where none is), and with a random-label model
            ``"data_randomisation"`` -> method -> similarity -> mean.
        layers: the randomised layers, from the head down.
        config: the run's settings.
        skipped: one ``{"image_id", "path", "error"}`` per file that could not be read.
    """

    summary: dict[str, dict]
    layers: list[str]
    config: dict = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        """The JSON report: ``"kind": "sanity"``, the config, ``"layers"``, ``"results"`` (the summary), skipped."""
        return {
            "kind": "sanity",
            **self.config,
            "layers": self.layers,
            "results": self.summary,
            "skipped": self.skipped,
        }


def evaluate_sanity(
    samples: Iterable,
    model: nn.Module,
    methods: Sequence[str],
    preprocess: Preprocess,
    *,
    orders: Sequence[str] = ORDERS,
    random_model: nn.Module | None = None,
    seed: int = SEED,
    depth: int | None = 2,
    target: Literal["predicted", "label"] = "label",
    target_layer: str | None = None,
    per_image: str | os.PathLike | None = None,
    resume: bool = False,
    batch_size: int = 8,
    workers: int = 2,
    config: dict | None = None,
    progress: bool | None = None,
) -> SanityResult:
    """The sanity checks (:mod:`camloc.metrics.sanity`) of several methods on the samples (with ``.label``).

    Each method's map of an image (the label's class, or the model's top-1) is compared with the
    map of the randomised model, layer by layer from the head down, for each order; and with the map
    of ``random_model`` (trained on shuffled labels) when one is given. The per-image values go to a
    JSON-lines journal (``per_image``), so the run resumes after a kill and runs under torchrun.
    Cost per image and method: one map per layer and order (each a forward pass, or a forward and a
    backward pass), plus one for the data randomisation test.

    Args:
        samples: the images and their labels.
        model: the trained classifier (never changed).
        methods: method names.
        preprocess: how the files become the model's input.
        orders: ``"cascading"`` and / or ``"independent"``.
        random_model: the same architecture trained on shuffled labels (None: no data randomisation test).
        seed: the seed of every layer's re-initialisation.
        depth: how modules group into layers (:func:`~camloc.metrics.sanity.randomisation_layers`).
        target: ``"label"`` or ``"predicted"``: the class explained.
        target_layer: the gradient methods' layer, by name.
        per_image: the journal (one JSON object per image); None: none.
        resume: continue the run recorded in ``per_image``.
        batch_size: images per batch.
        workers: threads for decoding.
        config: settings recorded with the journal and in the result.
        progress: show a progress bar (default: on a terminal).

    Returns:
        The means per order, method, layer and similarity, the layers, the settings and the unreadable files.
    """
    if target not in ("predicted", "label"):
        raise InvalidArgument("target", f"target must be 'predicted' or 'label', not {target!r}")
    for order in orders:
        if order not in ORDERS:
            raise InvalidArgument("orders", f"unknown order {order!r}; expected {' or '.join(ORDERS)}")
    layers = [name for name, _ in randomisation_layers(model, depth)]
    settings = {
        **(config or {}),
        "target": target,
        "orders": list(orders),
        "seed": seed,
        "depth": depth,
        "methods": list(methods),
        "data_randomisation": random_model is not None,
        "similarities": list(SIMILARITIES),
        "preprocess": repr(preprocess),
    }
    run = Run(per_image, "sanity", settings, resume=resume)

    def score(images: Tensor, read: list[tuple[int, Any]], geometries: list[Geometry]) -> list[dict]:
        classes = _classes(model, images, [s for _, s in read], target)
        tests: dict[str, dict] = {
            order: model_randomisation(
                model, methods, images, classes, order=order, seed=seed, depth=depth, target_layer=target_layer
            )
            for order in orders
        }
        if random_model is not None:
            tests["data_randomisation"] = data_randomisation(
                model, random_model, methods, images, classes, target_layer=target_layer
            )
        return _sanity_rows(tests, read, classes)

    everything, skipped = _over_batches(samples, run, preprocess, model, score, batch_size, workers, progress)
    summary: dict[str, dict] = {
        order: {
            m: {layer: _sanity_means([r[order][m][layer] for r in everything]) for layer in layers} for m in methods
        }
        for order in orders
    }
    if random_model is not None:
        summary["data_randomisation"] = {
            m: _sanity_means([r["data_randomisation"][m] for r in everything]) for m in methods
        }
    return SanityResult(summary, layers, {**settings, "images": len(everything)}, skipped)


def _sanity_rows(tests: dict[str, dict], read: list[tuple[int, Any]], classes: Tensor) -> list[dict]:
    """One journal record per image: per test, method (and layer) its similarities as a list (None for NaN)."""
    rows = []
    for k, (_, sample) in enumerate(read):
        row = {"image_id": sample.image_id, "label": sample.label, "class": int(classes[k])}
        for test, results in tests.items():
            if test == "data_randomisation":
                row[test] = {m: _values(v, k) for m, v in results.items()}
            else:
                row[test] = {m: {layer: _values(v, k) for layer, v in layers.items()} for m, layers in results.items()}
        rows.append(row)
    return rows


def _classes(model: nn.Module, images: Tensor, samples: list, target: str) -> Tensor:
    if target == "label":
        return torch.tensor([s.label for s in samples], device=images.device)
    with torch.no_grad():
        return output_tensor(model(images)).argmax(dim=1)


def _values(similarities: Mapping[str, Tensor], k: int) -> list[float | None]:
    """Image ``k``'s similarities in the order of :data:`SIMILARITIES`, NaN as None (JSON)."""
    values = [float(similarities[key][k]) for key in SIMILARITIES]
    return [None if math.isnan(v) else v for v in values]


def _sanity_means(values: list[list[float | None]]) -> dict[str, float | None]:
    """Similarity -> its mean over the images where it is defined (None: nowhere), from per-image value lists."""
    columns = [[v for v in column if v is not None] for column in zip(*values, strict=True)] or [[]] * len(SIMILARITIES)
    return {key: (sum(c) / len(c) if c else None) for key, c in zip(SIMILARITIES, columns, strict=True)}
