"""``camloc report``: one self-contained HTML file of an evaluation (summary, curves, per class, galleries)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import DatasetError
from .common import (
    DATASET_FLAGS,
    MODEL_FLAGS,
    add_dataset_args,
    add_model_args,
    load_method,
    open_data,
    positive,
)

__all__ = ["print_report", "register", "run"]


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument(
        "results",
        metavar="RESULTS.json",
        help="the results JSON of camloc evaluate (or of camloc metrics / sanity alone)",
    )
    p.add_argument(
        "--per-image",
        metavar="FILE.csv",
        help="its per-image rows (default: the file the evaluation wrote, as its JSON records)",
    )
    p.add_argument("--out", metavar="FILE.html", help="the report (default: RESULTS.html beside the JSON)")
    p.add_argument(
        "--metrics", metavar="FILE.json", help="also show these results of camloc metrics (pointing game, ...)"
    )
    p.add_argument("--sanity", metavar="FILE.json", help="also show these results of camloc sanity (curves, tables)")
    p.add_argument(
        "--gallery", type=positive, default=8, metavar="N", help="pictures per gallery (default: %(default)s)"
    )
    p.add_argument("--no-maps", action="store_true", help="pictures without maps: no model is loaded")
    p.add_argument(
        "--data", metavar="DIR", help="the evaluated dataset, if it moved (default: the one the JSON records)"
    )
    add_dataset_args(p)
    add_model_args(p)
    # None: not given; the evaluation's own model, method and dataset flags (recorded in its JSON) apply.
    p.set_defaults(run=run, model=None, method=None, format=None, split=None)
    p.epilog = (
        "The model, method and dataset are those the JSON records (camloc evaluate writes them); "
        "--model and the model flags, or --data and the dataset flags, replace them."
    )


def run(args: argparse.Namespace) -> int:
    """Read the JSON and the rows, draw the galleries' maps again, write the HTML."""
    from ..reports.html import load_results

    results_path = Path(args.results)
    results = load_results(results_path)
    recorded = results.get("arguments") or {}
    per_image = args.per_image or results.get("per_image")
    if per_image and not Path(per_image).is_file():
        raise FileNotFoundError(f"{per_image}: per-image file not found (give it with --per-image)")
    dataset = method = preprocess = None
    class_names = None
    if per_image:
        dataset = open_data(_flags(args, DATASET_FLAGS, args.data is not None, recorded, results))
        class_names = dataset.class_names
        if not args.no_maps:
            model_args = _flags(args, MODEL_FLAGS, args.model is not None, recorded, results)
            if not model_args.model:
                raise DatasetError(
                    "does not record how to load its model; pass --model (and --weights), or --no-maps", results_path
                )
            method, info = load_method(model_args)
            preprocess = info.preprocess
            class_names = class_names or list(info.class_names or []) or None
    out = Path(args.out) if args.out else results_path.with_suffix(".html")
    return print_report(
        results_path, out, per_image, dataset, method, preprocess, class_names, args.gallery,
        metrics=args.metrics, sanity=args.sanity,
    )  # fmt: skip


def print_report(
    results_path, out, per_image, dataset, method, preprocess, class_names, gallery: int, source: str | None = None,
    metrics: str | None = None, sanity: str | None = None,
) -> int:  # fmt: skip
    """Write the report and say where it is, its size and how long it took."""
    from ..reports.html import write_report

    start = time.perf_counter()
    report = write_report(
        results_path,
        out,
        per_image=per_image,
        dataset=dataset,
        method=method,
        preprocess=preprocess,
        class_names=class_names,
        gallery=gallery,
        source=source,
        metrics=metrics,
        sanity=sanity,
    )
    pictures = sum(report.galleries.values())
    print(
        f"camloc: report in {report.path} ({report.bytes / 1e6:.1f} MB, {pictures} gallery pictures, "
        f"{time.perf_counter() - start:.1f} s)"
    )
    return 0


def _flags(args: argparse.Namespace, keys: tuple, mine: bool, recorded: dict, results: dict) -> argparse.Namespace:
    """``args`` with the flags ``keys`` as given here (``mine``) or as the evaluation recorded them."""
    values = {k: getattr(args, k, None) if mine else recorded.get(k) for k in keys}
    if not mine:
        values["data"] = values.get("data") or results.get("data")
        values["format"] = values.get("format") or results.get("format")
    values["method"] = args.method or results.get("method") or "cam"
    merged = argparse.Namespace(**{**vars(args), **values})
    merged.format = merged.format or "auto"
    merged.split = merged.split or "test"
    return merged
