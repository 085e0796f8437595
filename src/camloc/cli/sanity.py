"""``camloc sanity``: the sanity checks of map methods (model parameter and data randomisation) on a dataset."""

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
    nothing_left_unless_done,
    open_data,
    positive,
    report_skipped,
)
from .faithfulness import add_methods_group

__all__ = ["register", "run"]

_LAYERS = {"blocks": 2, "modules": None}


def _orders(text: str) -> list[str]:
    names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not names or any(n not in ("cascading", "independent") for n in names):
        raise argparse.ArgumentTypeError(f"expected cascading, independent or both (comma-separated), got {text!r}")
    return names


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("data", metavar="DATA", help="dataset folder (any format evaluate reads; images and labels)")
    add_dataset_args(p)
    p.add_argument("--limit", type=positive, metavar="N", help="only the first N images")
    p.add_argument(
        "--target",
        choices=["label", "predicted"],
        default="label",
        help="class to explain: the dataset label (default) or the trained model's top-1",
    )
    p.add_argument(
        "--orders",
        type=_orders,
        default=["cascading", "independent"],
        metavar="O1,O2",
        help="randomisation orders: cascading (from the head down, cumulative), independent (one layer at a time); "
        "default: both",
    )
    p.add_argument(
        "--layers",
        choices=list(_LAYERS),
        default="blocks",
        help="what one randomisation step re-draws: blocks (modules grouped by the first two parts of their "
        "names: features.17, layer4.2; default) or modules (every module with parameters alone, as Quantus)",
    )
    p.add_argument(
        "--seed", type=int, default=43, help="seed of each layer's re-initialisation (default: 43, Quantus' MPRT's)"
    )
    p.add_argument(
        "--random-labels-model",
        metavar="MODEL",
        help="the data randomisation test: the same architecture trained on shuffled labels (any --model value)",
    )
    p.add_argument("--random-labels-weights", metavar="PATH", help="its weight file, as --weights")
    p.add_argument("--out", metavar="DIR", default="out/sanity", help="sanity.json, sanity.png (default: %(default)s)")
    p.add_argument("--per-image", metavar="FILE.jsonl", help="one JSON object per image (default: DIR/per-image.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue the run whose per-image file is there")
    add_overwrite_arg(p)
    p.add_argument(
        "--batch-size", type=positive, default=8, metavar="N", help="images per batch (default: %(default)s)"
    )
    p.add_argument(
        "--workers", type=positive, default=2, metavar="N", help="threads for decoding (default: %(default)s)"
    )
    add_model_args(p, methods=False)
    add_methods_group(p, ["cam"], "module whose output the gradient methods explain (default: theirs)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the checks, print the table, write the JSON and the figure."""
    from ..distributed import world
    from ..evaluation.map_metrics import evaluate_sanity
    from ..models.loading import load_model
    from ..reports.judging import sanity_figure, sanity_tables, save_figure
    from ..utils import model_device, versions, write_json

    out = Path(args.out)
    per_image = Path(args.per_image or out / "per-image.jsonl")
    lock_output(per_image)
    check_outputs(args, out / "sanity.json", out / "sanity.png")
    check_outputs(args, per_image, flag="--per-image" if args.per_image else "--out", resumable=True)
    if args.overwrite and not args.resume:
        per_image.unlink(missing_ok=True)
    dataset = open_data(args)
    model, info = load_model_and_info(args)
    random_model = None
    if args.random_labels_model:
        random_model = load_model(args.random_labels_model, args.random_labels_weights, device=model_device(model))
    samples = dataset.samples[: args.limit] if args.limit else dataset.samples
    depth = _LAYERS[args.layers]
    if world().is_main:
        print(
            f"camloc: {len(samples)} image(s) x {len(args.methods)} method(s) x {len(args.orders)} order(s), "
            "one map per layer each",
            file=sys.stderr,
        )
    with nothing_left_unless_done(args, per_image):
        result = evaluate_sanity(
            samples,
            model,
            args.methods,
            info.preprocess,
            orders=args.orders,
            random_model=random_model,
            seed=args.seed,
            depth=depth,
            target=args.target,
            target_layer=args.target_layer,
            per_image=per_image,
            resume=args.resume,
            batch_size=args.batch_size,
            workers=args.workers,
            config={
                "model": info.name,
                "data": str(Path(args.data).resolve()),
                "format": dataset.format,
                "layer_grouping": args.layers,
                "random_labels_model": args.random_labels_model,
            },
        )
    if not world().is_main:
        return 0
    result.config["versions"] = versions()
    report = result.to_json()
    print(f"Sanity checks of {info.name} on {dataset.name}: {result.config['images']} image(s), {args.target} class")
    for title, header, rows in sanity_tables(report):
        print(f"\n{title}\n\n| " + " | ".join(header) + " |\n|---|" + "---:|" * (len(header) - 1))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    json_path = write_json(report, out / "sanity.json")
    png = save_figure(sanity_figure(report), out / "sanity.png")
    print(f"camloc: results in {json_path}, figure in {png}, per-image values in {per_image}")
    return report_skipped(result.skipped)
