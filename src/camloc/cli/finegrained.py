"""``camloc finegrained``: the paper's fine-grained experiment (Table 4): classify full images, CAM crops, GT crops."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..maps.registry import METHOD_NAMES
from .common import (
    add_model_args,
    add_overwrite_arg,
    check_outputs,
    fraction,
    load_model_and_info,
    lock_output,
    positive,
    report_skipped,
)
from .train import add_train_data_args

__all__ = ["register", "run"]


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    add_train_data_args(p)
    p.add_argument(
        "--mode",
        choices=["probe", "train"],
        default="probe",
        help="probe: linear probes on --model's GAP features (the paper); train: train --arch from scratch on full "
        "images, CAM crops and GT crops (default: %(default)s)",
    )
    p.add_argument(
        "--work",
        metavar="DIR",
        default="out/finegrained",
        help="train mode: where the three models and the crops go; a rerun resumes from them (default: %(default)s)",
    )
    p.add_argument("--arch", default="gapnet", help="train mode: architecture (default: %(default)s)")
    p.add_argument("--epochs", type=positive, default=20, help="train mode: epochs per model (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="train mode: seed (default: %(default)s)")
    p.add_argument(
        "--localizer",
        metavar="MODEL",
        help="probe mode: box images with this model's CAM of its own top-1 class instead of the probe's CAM",
    )
    p.add_argument(
        "--kind", choices=["svm", "logistic"], default="svm", help="probe (default: %(default)s, as the paper)"
    )
    p.add_argument("--C", type=float, default=1.0, help="inverse regularization strength (default: %(default)s)")
    p.add_argument(
        "--threshold", type=fraction, default=0.2, help="CAM box threshold, fraction of the max (default: %(default)s)"
    )
    p.add_argument(
        "--margin",
        type=fraction,
        default=0.0,
        help="probe mode: grow every CAM box by this fraction of its sides before cropping (default: %(default)s)",
    )
    p.add_argument(
        "--crop-size", type=positive, metavar="PX", help="probe mode: side crops are squashed to (default: --size)"
    )
    p.add_argument("--json", metavar="FILE", default="out/finegrained/results.json", help="(default: %(default)s)")
    add_overwrite_arg(p)
    p.add_argument(
        "--batch-size", type=positive, default=32, metavar="N", help="images per forward pass (default: %(default)s)"
    )
    p.add_argument(
        "--workers", type=positive, default=2, metavar="N", help="threads for decoding (default: %(default)s)"
    )
    add_model_args(p, methods=False)
    p.add_argument(
        "--method",
        default="cam",
        choices=METHOD_NAMES,
        help="map method whose maps give the boxes (default: %(default)s)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the experiment in probe or train mode, print the three accuracies, write the JSON."""
    from ..datasets.registry import open_train_test
    from ..errors import DatasetError
    from ..models.info import model_info
    from ..models.loading import load_model
    from ..training.finegrained import finegrained
    from ..utils import model_device, versions, write_json

    lock_output(args.json)
    if args.mode != "train":  # train mode's rerun resumes from --work and writes its JSON again (documented)
        check_outputs(args, args.json, flag="--json")
    train_set, test_set = open_train_test(
        args.data, args.format, test=args.test, images=args.images, classes=args.class_map
    )
    if test_set is None:
        raise DatasetError(f"{args.data}: no test set found; give a folder with train/ and test/, or --test DATA")
    if args.mode == "train":
        return _run_train(args, train_set, test_set)
    model, info = load_model_and_info(args)
    localizer = None if not args.localizer else load_model(args.localizer, device=model_device(model))
    result = finegrained(
        model,
        train_set,
        test_set,
        info.preprocess,
        kind=args.kind,
        C=args.C,
        threshold=args.threshold,
        batch_size=args.batch_size,
        workers=args.workers,
        localizer=localizer,
        localizer_preprocess=None if localizer is None else model_info(localizer).preprocess,
        margin=args.margin,
        crop_size=args.crop_size,
        method=args.method,
    )
    data = str(Path(args.data).resolve())
    record = {"model": info.name, "localizer": args.localizer, "data": data, "mode": "probe", "kind": args.kind}
    record["method"] = args.method
    settings = {"C": args.C, "threshold": args.threshold, "margin": args.margin, "crop_size": args.crop_size}
    path = write_json({**record, **settings, **result.to_json(), "versions": versions()}, args.json)
    boxes = f", boxes from {args.localizer}" if args.localizer else ""
    return _print(result, f"{info.name} + {args.kind} probe{boxes}, on {test_set.name}", path)


def _run_train(args: argparse.Namespace, train_set, test_set) -> int:
    from ..runtime import keep_freed_memory
    from ..training.config import TrainConfig
    from ..training.finegrained import finegrained_train
    from ..utils import versions, write_json

    keep_freed_memory()
    config = TrainConfig(arch=args.arch, epochs=args.epochs, size=args.size, seed=args.seed, workers=args.workers)
    result = finegrained_train(train_set, test_set, config, args.work, threshold=args.threshold, method=args.method)
    data = str(Path(args.data).resolve())
    record = {"data": data, "mode": "train", "method": args.method, "config": vars(config), "work": args.work}
    path = write_json({**record, **result.to_json(), "versions": versions()}, args.json)
    return _print(result, f"{args.arch} trained on each kind of image, {test_set.name}", path)


def _print(result, title: str, path) -> int:
    rows = [
        ("full image", result.full),
        ("crop to the CAM box", result.cam_crop),
        ("full image + CAM crop", result.full_and_cam_crop),
        ("crop to the GT box", result.gt_crop),
        ("full image + GT crop", result.full_and_gt_crop),
    ]
    print(f"{title} ({result.train_images} train / {result.test_images} test images)")
    for name, value in rows:
        if value is not None:
            gain = f"  ({value - result.full:+.2f})" if name != "full image" else ""
            print(f"  {name:<28}{value:>8.2f}{gain}")
    print(f"  {'CAM boxes with IoU > 0.5':<28}{result.localized:>8.2f}")
    print(f"camloc: results in {path}")
    return report_skipped(result.skipped)
