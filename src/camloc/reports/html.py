"""``camloc report``: one self-contained HTML file of an evaluation, readable offline.

It shows the results JSON of ``camloc evaluate`` (every metric, the accuracy-vs-threshold curves)
and, from its per-image file, an IoU histogram, a sortable per-class table, counts of the failure
kinds of :mod:`camloc.reports.analysis` and galleries of pictures (worst, best, borderline, each
failure kind), each linked to its image's row. Given the results of ``camloc metrics`` and
``camloc sanity`` (or one of them alone) it also shows the maps judged: a table of every method's
pointing games, relevance and ROAD, and the sanity checks' curves and tables (:mod:`.judging`).
Everything is inline (CSS, script, SVG charts, JPEG ``data:`` URIs) and a Content-Security-Policy
forbids the page any request, so it opens the same without a network. Its size is bounded by the
galleries and the class count, not by the number of images: 0.9 MB for ImageNet's 725 images at
the default 8 pictures per gallery (56 at most), well under 10 MB for any run.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from jinja2 import Environment, FileSystemLoader, select_autoescape
from matplotlib.figure import Figure

from ..datasets.base import Dataset
from ..errors import DatasetError
from ..images import Preprocess
from ..maps.core import MapMethod
from ..utils import atomic_path, camloc_version
from .analysis import BOX_FAILURES, GALLERIES, ImageRecord, choose_galleries, per_class, read_records
from .figures import curves_figure, histogram_figure
from .judging import is_metrics, is_sanity, metrics_table, sanity_figure, sanity_tables
from .pictures import BOX_COLOUR, TRUTH_COLOUR, gallery_pictures
from .summary import METRIC_NAMES

__all__ = ["Report", "load_results", "render_report", "write_report"]

_TEMPLATES = Path(__file__).with_name("templates")
_IOU_EDGES = np.linspace(0.0, 1.0, 21).tolist()
_IOU = "IoU of the box with the ground truth"


@dataclass
class Report:
    """What :func:`write_report` wrote: the file, its size, and how many pictures each gallery holds."""

    path: Path
    bytes: int
    galleries: dict[str, int] = field(default_factory=dict)


def load_results(path: str | os.PathLike) -> dict:
    """The results JSON of ``camloc evaluate``, checked to be one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: results file not found")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"not a JSON file ({err})", path) from None
    if not isinstance(results, dict) or "images" not in results:
        raise DatasetError("not a results file of camloc evaluate (it has no 'images')", path)
    return results


def write_report(
    results_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    per_image: str | os.PathLike | None = None,
    dataset: Dataset | None = None,
    method: MapMethod | None = None,
    preprocess: Preprocess | None = None,
    class_names: Sequence[str] | None = None,
    gallery: int = 8,
    source: str | None = None,
    metrics: str | os.PathLike | None = None,
    sanity: str | os.PathLike | None = None,
) -> Report:
    """Write the HTML report of an evaluation (atomically).

    Args:
        results_path: the results JSON of ``camloc evaluate`` (or of ``camloc metrics`` or
            ``camloc sanity`` alone: a page of those results only).
        out: the HTML file to write.
        per_image: its per-image CSV; without it the report holds the summary and the curves only.
        dataset: the evaluated dataset (the ground-truth boxes of the pictures and of the failure kinds).
        method: the evaluated map method, to draw the gallery images' maps (None: pictures without maps).
        preprocess: the model's preprocessing (the images are squashed to the evaluated size).
        class_names: class names by index (default: the dataset's).
        gallery: pictures per gallery.
        source: how the page names the per-image file (default: its path).
        metrics: the results JSON of ``camloc metrics`` on the same model and data (a "map metrics" section).
        sanity: the results JSON of ``camloc sanity`` (a "sanity checks" section with its figure).
    """
    results_path = Path(results_path)
    results = load_results(results_path)
    judged = {
        "metrics": _judged(metrics, is_metrics, "camloc metrics"),
        "sanity": _judged(sanity, is_sanity, "camloc sanity"),
    }
    for key, check in (("metrics", is_metrics), ("sanity", is_sanity)):
        if check(results):
            judged[key] = results
    settings: dict = {}
    records: list[ImageRecord] | None = None
    chosen: dict[str, list[ImageRecord]] = {}
    pictures: dict[str, str] = {}
    if per_image is not None:
        settings, records = read_records(per_image, dataset)
        chosen = choose_galleries(records, gallery)
        shown = {r.result.image_id: r for items in chosen.values() for r in items}
        if dataset is not None:
            samples = {s.image_id: s for s in dataset.samples}
            items = [(samples[i], r.result) for i, r in shown.items()]
            pictures = gallery_pictures(items, method, preprocess or Preprocess(), settings)
    names = class_names or (dataset.class_names if dataset is not None else None)
    evaluated = datetime.datetime.fromtimestamp(results_path.stat().st_mtime).astimezone()
    page = render_report(
        results,
        records=records,
        galleries=chosen,
        pictures=pictures,
        settings=settings,
        class_names=names,
        evaluated=evaluated,
        source=source or (str(per_image) if per_image is not None else None),
        metrics=judged["metrics"],
        sanity=judged["sanity"],
    )
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Report(out, out.stat().st_size, {k: len(v) for k, v in chosen.items()})


def render_report(
    results: dict,
    *,
    records: Sequence[ImageRecord] | None = None,
    galleries: Mapping[str, Sequence[ImageRecord]] | None = None,
    pictures: Mapping[str, str] | None = None,
    settings: Mapping | None = None,
    class_names: Sequence[str] | None = None,
    evaluated: datetime.datetime | None = None,
    source: str | None = None,
    metrics: dict | None = None,
    sanity: dict | None = None,
) -> str:
    """The report's HTML.

    Args:
        results: the results JSON of ``camloc evaluate`` (or of ``camloc metrics`` / ``camloc sanity`` alone).
        records: the per-image records (None: no per-image file).
        galleries: gallery key -> its records, as :func:`~camloc.reports.analysis.choose_galleries` gives.
        pictures: image id -> a ``data:`` URI of its picture.
        settings: the per-image file's settings line.
        class_names: class names by index.
        evaluated: when the results file was written.
        source: the per-image file's path, as the user gave it.
        metrics: the results JSON of ``camloc metrics`` (None: no such section).
        sanity: the results JSON of ``camloc sanity`` (None: no such section).
    """
    settings = dict(settings or {})
    evaluation = not (is_metrics(results) or is_sanity(results))
    galleries = galleries or {}
    pictures = pictures or {}

    def name(label: int) -> str:
        return class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label)

    read = [r for r in records or [] if r.result.outcome is not None]
    failures = []
    if records is not None:
        counts = {"wrong_class": sum(r.wrong_class for r in read)}
        counts.update({k: sum(r.failure == k for r in read) for k in BOX_FAILURES})
        failures = [(k, GALLERIES[k][0], n, 100.0 * n / max(1, len(read))) for k, n in counts.items()]
    in_galleries: dict[int, list[str]] = {}
    for key, items in galleries.items():
        for r in items:
            in_galleries.setdefault(r.line, []).append(GALLERIES[key][0])
    shown = sorted({r.line: r for items in galleries.values() for r in items}.values(), key=lambda r: r.line)
    versions = results.get("versions") or {}
    curves = results.get("curves") if evaluation else None
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(["html", "j2"]), keep_trailing_newline=True
    )
    env.filters["classname"] = name
    return env.get_template("report.html.j2").render(
        results=results,
        settings=settings,
        header=_header(results, settings, evaluated, versions),
        evaluation=evaluation,
        metrics=_metric_rows(results) if evaluation else [],
        map_metrics=metrics_table(metrics) if metrics else None,
        map_metrics_images=(metrics or {}).get("images", "?"),
        map_metrics_target=(metrics or {}).get("target", "?"),
        sanity=sanity,
        sanity_tables=sanity_tables(sanity) if sanity else [],
        sanity_svg=_svg(sanity_figure(sanity), "sanity") if sanity else None,
        curves_svg=_svg(curves_figure(results["cam_thresholds"], results["curves"]), "curves") if curves else None,
        histogram_svg=_svg(histogram_figure([r.iou for r in read], _IOU_EDGES, xlabel=_IOU, marker=0.5), "iou")
        if read
        else None,
        records=records,
        failures=failures,
        classes=[(row, name(row.label)) for row in per_class(read)],
        galleries=[(key, *GALLERIES[key], galleries[key]) for key in GALLERIES if key in galleries],
        pictures=pictures,
        shown=shown,
        in_galleries=in_galleries,
        source=source,
        truth_colour=TRUTH_COLOUR,
        box_colour=BOX_COLOUR,
    )


def _judged(path: str | os.PathLike | None, check, command: str) -> dict | None:
    """The results JSON of ``command`` at ``path`` (None: none), checked to be one."""
    if path is None:
        return None
    results = load_results(path)
    if not check(results):
        raise DatasetError(f"not a results file of {command}", Path(path))
    return results


def _header(results: dict, settings: dict, evaluated: datetime.datetime | None, versions: dict) -> list[tuple]:
    protocol = results.get("protocol", settings.get("protocol", "?"))
    details = []
    if "threshold" in settings:
        details.append(f"box at {settings['threshold']:g}")
    if "step" in settings:
        details.append(f"threshold step {settings['step']:g}")
    if "size" in settings:
        details.append(f"images squashed to {settings['size']}²")
    if results.get("baseline"):
        details.append(f"{results['baseline']} baseline")
    method = results.get("method") or ", ".join(results.get("methods") or []) or "?"
    rows = [
        ("model", results.get("model", "?")),
        ("method", method),
        ("data", f"{results.get('data', '?')} ({results.get('format', '?')})"),
        ("protocol", protocol + (f" ({', '.join(details)})" if details else "")),
        ("evaluated", evaluated.strftime("%Y-%m-%d %H:%M %Z") if evaluated else "?"),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "?"),
        (
            "report",
            f"camloc {camloc_version()}, {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        ),
    ]
    return rows if protocol != "?" else [row for row in rows if row[0] != "protocol"]


def _metric_rows(results: dict) -> list[tuple[str, str]]:
    rows = [("images", str(results.get("images", "?")))]
    if results.get("skipped"):
        rows.append(("images not read (not counted)", str(len(results["skipped"]))))
    for key, label in METRIC_NAMES.items():
        value = results.get(key)
        text = "–" if value is None else (f"{value:.2f}" if key != "best_threshold" else f"{value:g}")
        rows.append((label, text))
        per_iou = results.get("max_box_acc_v2_per_iou")
        if key == "max_box_acc_v2" and per_iou:
            rows.append(("  at IoU 30 / 50 / 70", " / ".join(f"{per_iou[t]:.2f}" for t in ("30", "50", "70"))))
    return rows


def _svg(fig: Figure, salt: str) -> str:
    """A figure as inline SVG: text as text, no XML prolog, metadata or namespace URLs."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
