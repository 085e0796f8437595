"""The maps judged, for a person: the sanity-check figure and the tables of ``camloc metrics`` and ``camloc sanity``.

Everything here reads the JSON files those commands write (``"kind": "metrics"`` / ``"sanity"``),
so the report and the commands draw the same things.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from ..utils import atomic_path

__all__ = [
    "SIMILARITY_NAMES",
    "is_metrics",
    "is_sanity",
    "metrics_table",
    "sanity_figure",
    "sanity_tables",
    "save_figure",
]

#: similarity key -> how figures and tables name it.
SIMILARITY_NAMES = {
    "spearman_abs": "Spearman (absolute)",
    "spearman": "Spearman (signed)",
    "ssim": "SSIM",
    "hog": "HOG (Spearman)",
}
_MARKERS = ("o", "s", "^", "v", "D", "x", "+", "*", "P")
_LINES = ("-", "--", ":")
_ORDER_NAMES = {"cascading": "cascading randomisation", "independent": "independent randomisation"}


def is_metrics(results: dict) -> bool:
    """Whether ``results`` is the JSON of ``camloc metrics`` (one written before it said its kind has a tolerance)."""
    return results.get("kind") == "metrics" or (isinstance(results.get("methods"), dict) and "tolerance" in results)


def is_sanity(results: dict) -> bool:
    """Whether ``results`` is the JSON of ``camloc sanity``."""
    return results.get("kind") == "sanity"


def _cell(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def metrics_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """The header and rows (method, images, one cell per metric) of a ``camloc metrics`` JSON."""
    methods = results["methods"]
    keys = list(dict.fromkeys(k for row in methods.values() for k in row if k != "images"))
    rows = [[name, str(row.get("images", "?")), *(_cell(row.get(k), 4) for k in keys)] for name, row in methods.items()]
    return ["method", "images", *keys], rows


def sanity_tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` tables of a ``camloc sanity`` JSON.

    Per order, each method's similarities after re-drawing the head alone and after re-drawing the
    whole network (cascading) or averaged over the layers (independent); and the data randomisation
    test's similarities when the run has them.
    """
    tables = []
    layers = results["layers"]
    for order, methods in results["results"].items():
        keys = list(SIMILARITY_NAMES)
        if order == "data_randomisation":
            header = ["method", *(SIMILARITY_NAMES[k] for k in keys)]
            rows = [[m, *(_cell(v.get(k)) for k in keys)] for m, v in methods.items()]
            tables.append(("data randomisation (random-label model)", header, rows))
            continue
        last = "all layers" if order == "cascading" else "layer mean"
        header = [
            "method",
            *(f"{SIMILARITY_NAMES[k]}: head" for k in keys),
            *(f"{SIMILARITY_NAMES[k]}: {last}" for k in keys),
        ]
        rows = []
        for m, per_layer in methods.items():
            head = per_layer[layers[0]]
            if order == "cascading":
                end = per_layer[layers[-1]]
            else:
                end = {k: _mean([per_layer[layer].get(k) for layer in layers]) for k in keys}
            rows.append([m, *(_cell(head.get(k)) for k in keys), *(_cell(end.get(k)) for k in keys)])
        tables.append((_ORDER_NAMES.get(order, order), header, rows))
    return tables


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def sanity_figure(results: dict) -> Figure:
    """One panel per randomisation order and similarity, one curve per method; x: the layers from the head down.

    The first point, "original", is the trained model's map compared with itself (1 by definition,
    as in the paper's figures).
    """
    layers = results["layers"]
    orders = [o for o in results["results"] if o != "data_randomisation"]
    keys = list(SIMILARITY_NAMES)
    width = max(7.0, 2.2 + 0.22 * len(layers)) * len(keys) / 2
    fig = Figure(figsize=(width, 3.4 * max(1, len(orders)) + 0.8), dpi=100)
    axes = fig.subplots(max(1, len(orders)), len(keys), squeeze=False, sharex=True)
    x = list(range(len(layers) + 1))
    for row, order in enumerate(orders):
        for col, key in enumerate(keys):
            ax = axes[row][col]
            for i, (method, per_layer) in enumerate(results["results"][order].items()):
                values = [1.0] + [_nan(per_layer[layer].get(key)) for layer in layers]
                # methods that coincide (Grad-CAM, XGrad-CAM and HiResCAM on a GAP head) stay visible by their style
                style = {"marker": _MARKERS[i % len(_MARKERS)], "linestyle": _LINES[i // len(_MARKERS) % len(_LINES)]}
                ax.plot(x, values, markersize=4, markerfacecolor="none", label=method, **style)
            ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
            ax.set_ylim(-0.3 if key.startswith("spearman") or key == "hog" else -0.1, 1.05)
            ax.set_title(f"{SIMILARITY_NAMES[key]}\n{_ORDER_NAMES.get(order, order)}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.set_xticks(x)
            ax.set_xticklabels(["original", *layers], rotation=90, fontsize=6)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 9), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG, atomically (its folder made if needed); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
