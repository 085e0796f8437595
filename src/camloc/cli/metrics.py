"""``camloc metrics``: pointing games, relevance mass / rank and ROAD of several map methods on a dataset with boxes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (
    add_dataset_args,
    add_model_args,
    add_overwrite_arg,
    check_outputs,
    load_model_and_info,
    lock_output,
    open_data,
    positive,
    report_skipped,
)
from .faithfulness import add_methods_group

__all__ = ["register", "run"]


def _percentiles(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or any(not 0 <= v <= 100 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated percentiles in [0, 100], got {text!r}")
    return values


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("data", metavar="DATA", help="dataset folder with boxes (any format evaluate reads)")
    add_dataset_args(p)
    p.add_argument("--limit", type=positive, metavar="N", help="only the first N images")
    p.add_argument(
        "--target",
        choices=["label", "predicted"],
        default="label",
        help="class to explain: the dataset label, whose object the boxes are (default), or the model's top-1",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=15,
        metavar="PX",
        help="the tolerant pointing game's radius in input pixels (default: %(default)s, TorchRay's)",
    )
    p.add_argument("--no-road", dest="road", action="store_false", help="leave ROAD out (its imputations are slow)")
    p.add_argument(
        "--road-percentiles",
        type=_percentiles,
        default=None,
        metavar="P1,P2,...",
        help="ROAD's percentiles (default: 10,20,...,90, as pytorch-grad-cam's ROADCombined)",
    )
    p.add_argument(
        "--json", metavar="FILE", default="out/metrics/results.json", help="the results (default: %(default)s)"
    )
    p.add_argument(
        "--per-image", metavar="FILE.csv", help="one row per image, METHOD.METRIC columns; --resume reads it"
    )
    p.add_argument("--resume", action="store_true", help="continue the run whose per-image rows are there")
    add_overwrite_arg(p)
    p.add_argument(
        "--batch-size", type=positive, default=16, metavar="N", help="images per batch (default: %(default)s)"
    )
    p.add_argument(
        "--workers", type=positive, default=2, metavar="N", help="threads for decoding (default: %(default)s)"
    )
    add_model_args(p, methods=False)
    add_methods_group(p, ["cam"])
    p.set_defaults(run=run)


def _table(summary: dict, title: str) -> str:
    keys = [k for k in next(iter(summary.values())) if k != "images"]
    lines = [title, "", "| Method | Images | " + " | ".join(keys) + " |", "|---|---:|" + "---:|" * len(keys)]
    for method, row in summary.items():
        cells = ["-" if row[k] is None else f"{row[k]:.4f}" for k in keys]
        lines.append(f"| {method} | {row['images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Score every method, print the table and write the JSON (and the per-image rows)."""
    from ..distributed import world
    from ..errors import InvalidArgument
    from ..evaluation.map_metrics import evaluate_map_metrics
    from ..maps.registry import create_method
    from ..metrics.road import ROAD_PERCENTILES
    from ..utils import versions, write_json

    if args.resume and not args.per_image:
        raise InvalidArgument("--resume", "--resume continues the rows of --per-image FILE.csv: name the file")
    lock_output(args.per_image or args.json)
    check_outputs(args, args.per_image, flag="--per-image", resumable=True)
    check_outputs(args, args.json, flag="--json")
    if args.per_image and args.overwrite and not args.resume:
        from ..evaluation.run import sidecar

        Path(args.per_image).unlink(missing_ok=True)
        sidecar(args.per_image).unlink(missing_ok=True)
    dataset = open_data(args)
    model, info = load_model_and_info(args)
    methods = {name: create_method(name, model, args.target_layer) for name in args.methods}
    samples = dataset.samples[: args.limit] if args.limit else dataset.samples
    percentiles = args.road_percentiles or list(ROAD_PERCENTILES)
    if world().is_main and args.road:
        print(
            f"camloc: {len(samples)} image(s) x {len(methods)} method(s); ROAD costs {2 * len(percentiles) + 1} "
            f"forward passes and {2 * len(percentiles)} sparse solves per image and method (--no-road leaves it out)",
            file=sys.stderr,
        )
    data = str(Path(args.data).resolve())
    result = evaluate_map_metrics(
        samples,
        model,
        methods,
        info.preprocess,
        per_image=args.per_image,
        resume=args.resume,
        target=args.target,
        tolerance=args.tolerance,
        with_road=args.road,
        percentiles=percentiles,
        batch_size=args.batch_size,
        workers=args.workers,
        config={"model": info.name, "data": data, "format": dataset.format},
    )
    if not world().is_main:
        return 0
    result.config["versions"] = versions()
    title = f"Map metrics of {info.name} on {dataset.name}: {result.config['images']} image(s), {args.target} class"
    print(_table(result.summary, title), end="")
    json_path = write_json(result.to_json(), Path(args.json))
    print(f"camloc: results in {json_path}" + (f", per-image rows in {args.per_image}" if args.per_image else ""))
    return report_skipped(result.skipped)
