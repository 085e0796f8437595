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
    lock_output,
    nothing_left_unless_done,
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
    p.add_argument(
        "--resume", action="store_true", help="continue the run journalled beside the file (FILE.npz.journal.jsonl)"
    )
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
    from ..distributed import barrier, rank_file, world
    from ..training.features import extract_features, save_features
    from ..training.finegrained import gt_boxes

    journal = Path(f"{args.out}.journal.jsonl")
    lock_output(args.out)
    check_outputs(args, args.out)
    check_outputs(args, journal, resumable=True)
    if args.overwrite and not args.resume:
        rank_file(journal).unlink(missing_ok=True)
    dataset = open_data(args)
    model, info = load_model_and_info(args)
    crops = gt_boxes(dataset) if args.crop == "gt" else None
    config = {"model": args.model, "weights": args.weights, "data": str(Path(args.data).resolve()), "crop": args.crop}
    with nothing_left_unless_done(args, rank_file(journal)):
        result = extract_features(
            model,
            dataset,
            info.preprocess,
            crops=crops,
            batch_size=args.batch_size,
            workers=args.workers,
            journal=journal,
            resume=args.resume,
            config=config,
        )
    if world().is_main:  # rank 0 of a torchrun launch saves and prints for the run
        result.meta.update(config)
        save_features(result, args.out)
    barrier()
    rank_file(journal).unlink(missing_ok=True)  # each process's own, once the file is whole
    if not world().is_main:
        return 0
    print(f"camloc: {len(result.labels)} feature vectors of {result.values.shape[1]} values in {args.out}")
    return report_skipped(result.skipped)
