"""``explain``: maps of the top-k (or chosen) classes, paper boxes, grids and a JSON for a list of images.

Boxes follow the paper's rule on each map in the original image's pixels: pixels >= ``threshold`` x
the map's maximum, the largest 8-connected component (:func:`camloc.boxes.paper_box`). The grids
show each map over its maximum, negatives at 0, so what the rule keeps is what lights up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ..boxes.paper import paper_box
from ..distributed import World, all_gather, rank_file, shard, world
from ..errors import BadImage
from ..figures import score_text, topk_grid
from ..images import Geometry, Preprocess, load_batch
from ..maps.core import CamOutput, MapMethod
from ..maps.frames import normalize_maps, to_image_frame
from ..models.info import ModelInfo
from ..utils import atomic_path, is_image_file, versions, write_json
from ..utils import progress as progress_bar

__all__ = ["ExplainResult", "collect_images", "describe", "explain", "explain_settings"]

log = logging.getLogger(__name__)

BOX_RULE = "paper: pixels >= threshold x the map's max, box of the largest 8-connected component"


@dataclass
class ExplainResult:
    """Per image read, its record (the JSON's ``images`` entries); per file not read, its error; files written."""

    records: list[dict] = field(default_factory=list)  # one per image that was read
    errors: list[BadImage] = field(default_factory=list)  # one per file that was not
    grids: list[Path] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # what the maps and boxes were made with


def collect_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, and the image files below each directory (sorted).

    Missing paths are kept, so that reading them reports them by name.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f)))
        else:
            files.append(p)
    return files


def explain(
    paths: Sequence[str | os.PathLike],
    method: MapMethod,
    info: ModelInfo,
    *,
    topk: int = 5,
    classes: Sequence[int] | None = None,
    preprocess: Preprocess | None = None,
    out_dir: str | os.PathLike | None = None,
    json_path: str | os.PathLike | None = None,
    maps_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
    threshold: float = 0.2,
    alpha: float = 0.5,
    progress: bool | None = None,
) -> ExplainResult:
    """Explain each image: per class its name, score and paper box in the image's own pixels.

    Args:
        paths: image files.
        method: any :class:`~camloc.maps.MapMethod`.
        info: the model's class names and preprocessing.
        topk: how many of each image's best classes, when ``classes`` is None.
        classes: these class indices for every image instead of the top-k.
        preprocess: instead of ``info.preprocess``; in ``full`` mode each image is its own batch
            (images of different shapes cannot be stacked).
        out_dir: one grid PNG per image goes here, as it is computed.
        json_path: the results JSON, rewritten after every batch (an interrupted run keeps what it computed).
        maps_dir: one ``.npy`` per image here: ``float32[k, height, width]``, the maps resampled to
            the image's pixels, not normalized (NaN where the model saw nothing).
        batch_size: images per forward pass.
        threshold: the paper rule's fraction of each map's maximum.
        alpha: heat-map opacity in the grids.
        progress: show a progress bar (None: when stderr is a terminal).

    Unreadable files are collected in ``errors`` and skipped. Under torchrun each process explains
    the files ``rank, rank + N, ...`` and keeps its own JSON (``JSON.rank<r>-of-<N>``); at the end
    every process gets the whole result, in the order of ``paths``, and rank 0 writes ``json_path``.
    """
    pre = preprocess or info.preprocess
    step = 1 if pre.mode == "full" else batch_size
    result = ExplainResult(settings=explain_settings(method, info, pre, topk, classes, threshold))
    names = _unique_stems(paths)
    headline = _headline(result.settings)
    here = world()
    mine = [p for _, p in shard(list(enumerate(paths)), here)]
    json_here = None if json_path is None else rank_file(json_path, here)
    bar = progress_bar(len(mine), enabled=progress if here.is_main else False)
    try:
        for start in range(0, len(mine), step):
            chunk = mine[start : start + step]
            batch = load_batch(chunk, pre, keep_originals=out_dir is not None)
            for err in batch.errors:
                log.warning("skipping %s", err)
            result.errors.extend(batch.errors)
            if batch.paths:
                wanted = None if classes is None else [list(classes)] * len(batch.paths)
                out = method(batch.images, topk=topk, classes=wanted, upsample=False)
                for i, path in enumerate(batch.paths):
                    geo = batch.geometries[i]
                    described, maps = describe(out, i, geo, info, threshold)
                    record: dict[str, Any] = {"path": path, **described}
                    predictions = record["predictions"]
                    boxes = [p["box"] for p in predictions]
                    if maps_dir is not None:
                        target = Path(maps_dir) / f"{names[path]}.npy"
                        with atomic_path(target) as tmp, open(tmp, "wb") as f:
                            np.save(f, maps.numpy().astype(np.float32))
                        record["maps"] = str(target)
                    if out_dir is not None:
                        assert batch.originals is not None
                        shown = normalize_maps(maps, "max").clamp(0.0, 1.0).numpy()
                        titles = [f"{p['name']}\n{score_text(p['score'])}" for p in predictions]
                        grid = topk_grid(
                            batch.originals[i],
                            list(shown),
                            titles,
                            boxes,
                            Path(out_dir) / f"{names[path]}.png",
                            alpha=alpha,
                            title=headline,
                            window=None if geo.covers_image else record["window"],
                        )
                        record["grid"] = str(grid)
                        result.grids.append(grid)
                    result.records.append(record)
            bar.update(len(chunk))
            if json_here is not None:
                _write(result, json_here)
    finally:
        bar.close()
        if json_here is not None:
            _write(result, json_here)
    if here.distributed:
        result = _gathered(result, paths, json_path)
    return result


def _gathered(
    mine: ExplainResult, paths: Sequence[str | os.PathLike], json_path: str | os.PathLike | None
) -> ExplainResult:
    """Every rank's records, errors and grids in the order of ``paths``; rank 0 writes the JSON."""
    order = {str(p): i for i, p in reversed(list(enumerate(paths)))}
    parts = all_gather((mine.records, mine.errors, mine.grids))
    whole = ExplainResult(settings=mine.settings)
    whole.records = sorted((r for records, _, _ in parts for r in records), key=lambda r: order[str(r["path"])])
    whole.errors = sorted((e for _, errors, _ in parts for e in errors), key=lambda e: order[str(e.path)])
    whole.grids = [Path(r["grid"]) for r in whole.records if "grid" in r]
    if json_path is not None and world().is_main:
        _write(whole, json_path)
        for rank in range(world().size):
            rank_file(json_path, World(rank, world().size)).unlink(missing_ok=True)
    return whole


def describe(
    out: CamOutput, i: int, geometry: Geometry, info: ModelInfo, threshold: float
) -> tuple[dict[str, Any], Tensor]:
    """Image ``i`` of ``out`` as ``explain``'s JSON records it, and its maps in the image's pixels.

    Args:
        out: a map method's output (``upsample=False`` is enough).
        i: the image's index in ``out``.
        geometry: where the model's input lies in that image.
        info: the model's class names.
        threshold: the paper rule's fraction of each map's maximum.

    Returns:
        ``({"width", "height", "predictions"[, "window"]}, Tensor[k, height, width])``: per class its
        rank, index, name, score and paper box (None when the rule keeps nothing); the maps are not
        normalized (NaN where the model saw nothing).
    """
    maps = to_image_frame(out.raw[i].float(), geometry).cpu()
    boxes = [paper_box(m, threshold) for m in maps.numpy()]
    predictions = [
        {
            "rank": r + 1,
            "index": int(c),
            "name": info.class_name(int(c)),
            "score": float(s),
            "box": list(b) if b is not None else None,
        }
        for r, (c, s, b) in enumerate(zip(out.classes[i].tolist(), out.scores[i].tolist(), boxes, strict=True))
    ]
    record: dict[str, Any] = {"width": geometry.width, "height": geometry.height, "predictions": predictions}
    if not geometry.covers_image:
        window = geometry.box_to_original((0, 0, geometry.input_width - 1, geometry.input_height - 1))
        record["window"] = list(window)
    return record, maps


def explain_settings(
    method: MapMethod, info: ModelInfo, pre: Preprocess, topk: int, classes: Sequence[int] | None, threshold: float
) -> dict:
    """What explain's maps and boxes were made with, as its JSON records it (``settings``)."""
    return {
        "model": info.name,
        "method": method.name,
        "target_layer": method.target_layer,
        "classes": "top-k" if classes is None else [int(c) for c in classes],
        "topk": topk if classes is None else len(classes),
        "box_rule": BOX_RULE,
        "threshold": threshold,
        "resize": pre.mode,
        "size": pre.size,
        "resize_size": pre.resize_size,
        "versions": versions(),
    }


def _headline(settings: dict) -> str:
    layer = f", layer {settings['target_layer']}" if settings["target_layer"] else ""
    seen = {
        "full": f"whole photo, shorter side {settings['resize_size']}",
        "crop": f"centre crop {settings['size']}²",
        "squash": f"squashed to {settings['size']}²",
    }[settings["resize"]]
    return f"{settings['model']} · {settings['method']}{layer} · boxes ≥ {settings['threshold']:g} × max · {seen}"


def _write(result: ExplainResult, json_path: str | os.PathLike) -> None:
    write_json(
        {
            "model": result.settings.get("model"),
            "settings": result.settings,
            "images": result.records,
            "errors": [{"path": e.path, "error": e.reason} for e in result.errors],
        },
        json_path,
    )


def _unique_stems(paths: Sequence[str | os.PathLike]) -> dict[str, str]:
    """Output names: the file stem, numbered where two inputs share one."""
    seen: dict[str, int] = {}
    names = {}
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        names[str(p)] = stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"
    return names
