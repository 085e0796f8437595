"""``camloc.explain`` with pictures: the paper's top-k grid of each image, drawn as ``explain`` computes it.

:func:`camloc.evaluation.explain.explain` computes the records, maps and journal and draws nothing
(evaluation sits below reports); it takes a drawing hook. :func:`grid_drawer` is camloc's: per image
a PNG with the photo and one panel per class, each map shown over its maximum (negatives at 0, so
what the paper rule keeps is what lights up) with its box, class name and score. :func:`explain`
is the run with that hook when ``out_dir`` is given: what ``camloc.explain`` and ``camloc explain`` call.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..evaluation.explain import Draw, ExplainResult, Picture
from ..evaluation.explain import explain as explain_records
from ..maps.frames import normalize_maps
from .figures import score_text, topk_grid

if TYPE_CHECKING:
    from torch import nn

    from ..maps.core import MapMethod
    from ..models.info import ModelInfo

__all__ = ["explain", "grid_drawer", "headline"]


def headline(settings: dict) -> str:
    """A grid's title line: model, method and layer, the box rule and what the model saw (``explain``'s settings)."""
    layer = f", layer {settings['target_layer']}" if settings["target_layer"] else ""
    seen = {
        "full": f"whole photo, shorter side {settings['resize_size']}",
        "crop": f"centre crop {settings['size']}²",
        "squash": f"squashed to {settings['size']}²",
    }[settings["resize"]]
    return f"{settings['model']} · {settings['method']}{layer} · boxes ≥ {settings['threshold']:g} × max · {seen}"


def grid_drawer(out_dir: str | os.PathLike, alpha: float = 0.5) -> Draw:
    """A drawing hook for :func:`camloc.evaluation.explain.explain`: ``out_dir/<image>.png``, the top-k grid.

    Args:
        out_dir: where the grids go (created when needed).
        alpha: heat-map opacity.
    """
    out = Path(out_dir)

    def draw(picture: Picture) -> Path:
        predictions = picture.record["predictions"]
        shown = normalize_maps(picture.maps, "max").clamp(0.0, 1.0).numpy()
        return topk_grid(
            picture.original,
            list(shown),
            [f"{p['name']}\n{score_text(p['score'])}" for p in predictions],
            [p["box"] for p in predictions],
            out / f"{picture.name}.png",
            alpha=alpha,
            title=headline(picture.settings),
            window=picture.record.get("window"),
        )

    return draw


def explain(
    paths: Sequence[str | os.PathLike],
    method: MapMethod | nn.Module,
    *legacy: ModelInfo,
    out_dir: str | os.PathLike | None = None,
    alpha: float = 0.5,
    **options: Any,
) -> ExplainResult:
    """:func:`camloc.evaluation.explain.explain`, plus one grid PNG per image in ``out_dir`` when it is given.

    Args:
        paths: image files.
        method: any :class:`~camloc.maps.MapMethod`, or a model (then CAM of it).
        *legacy: camloc 0.2's positional ``info``.
        out_dir: one grid PNG per image goes here, as it is computed (:func:`grid_drawer`).
        alpha: heat-map opacity in the grids.
        **options: the run's other arguments (``info=``, ``preprocess=``, ``topk=``, ``classes=``,
            ``json_path=``, ``maps_dir=``, ``resume=``, ...), as :func:`camloc.evaluation.explain.explain` takes them.

    A resumed run must draw to the same ``out_dir`` with the same ``alpha``.
    """
    if out_dir is not None:
        config = {**(options.pop("config", None) or {}), "grids": str(out_dir), "alpha": alpha}
        options.update(draw=grid_drawer(out_dir, alpha), config=config)
    return explain_records(paths, method, *legacy, **options)
