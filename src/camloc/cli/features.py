"""``camloc features``: the GAP feature vector of every image of a dataset, to a ``.npz`` file."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    add_dataset_args,
    add_model_args,
    add_overwrite_arg,
    check_outputs,
    load_model_and_info,
    open_data,
    positive,
    report_skipped,
)

__all__ = ["register", "run"]


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("data", metavar="DATA", help="dataset folder (any format evaluate reads, or class subfolders)")
    add_dataset_args(p)
    p.add_argument("--out", required=True, metavar="FILE.npz", help="features file to write")
    add_overwrite_arg(p)
    p.add_argument(
        "--crop",
        choices=["none", "gt"],
        default="none",
        help="gt: crop each image to its ground-truth box first (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size", type=positive, default=32, metavar="N", help="images per forward pass (default: %(default)s)"
    )
    p.add_argument(
        "--workers", type=positive, default=2, metavar="N", help="threads for decoding (default: %(default)s)"
    )
    add_model_args(p, methods=False)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Extract and save the features."""
    from ..distributed import world
    from ..training.features import extract_features, save_features
    from ..training.finegrained import gt_boxes

    check_outputs(args, args.out)
    dataset = open_data(args)
    model, info = load_model_and_info(args)
    crops = gt_boxes(dataset) if args.crop == "gt" else None
    result = extract_features(
        model, dataset, info.preprocess, crops=crops, batch_size=args.batch_size, workers=args.workers
    )
    if not world().is_main:  # rank 0 of a torchrun launch saves and prints for the run
        return 0
    result.meta.update(model=args.model, weights=args.weights, data=str(Path(args.data).resolve()), crop=args.crop)
    save_features(result, args.out)
    print(f"camloc: {len(result.labels)} feature vectors of {result.values.shape[1]} values in {args.out}")
    return report_skipped(result.skipped)
