"""``camloc train``: fit a GAP classifier on image labels alone, then score its CAM boxes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..datasets.registry import FORMATS
from ..training.train import AUGMENTS, FROZEN_STAGE, OPTIMIZERS, SCHEDULES
from .common import fraction, positive, report_skipped, resolve_device

__all__ = ["add_train_data_args", "register", "run"]


def add_train_data_args(p: argparse.ArgumentParser) -> None:
    """DATA, ``--test`` and the dataset flags of the commands that train (train, finegrained)."""
    p.add_argument(
        "data",
        metavar="DATA",
        help="training data: a folder with train/ (and test/) datasets, a CUB-200-2011 folder, or one dataset "
        "(any format evaluate reads, or class subfolders)",
    )
    p.add_argument("--test", metavar="DATA", help="test set (default: DATA/test, DATA/val or CUB's test split)")
    p.add_argument(
        "--format", choices=["auto", *FORMATS], default="auto", help="dataset layout (default: %(default)s, detected)"
    )
    p.add_argument("--images", metavar="DIR", help="image root for wsol metadata / XML annotations")
    p.add_argument("--class-map", metavar="FILE", help="class names, one per line, in index order")


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    add_train_data_args(p)
    p.add_argument("--out", required=True, metavar="MODEL.pt", help="model file, rewritten after every epoch")
    p.add_argument(
        "--arch",
        default="gapnet",
        help="gapnet (camloc's small GAP net), a torchvision name or timm:<name> (default: %(default)s)",
    )
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="start from the architecture's pretrained weights (offline; all but the classifier)",
    )
    p.add_argument("--weights", metavar="PATH", help="start from this weight file")
    p.add_argument(
        "--convert-gap",
        nargs="?",
        const="auto",
        metavar="LAYER",
        help="train the paper's -GAP variant: cut after LAYER (default: the paper's layer for VGG/AlexNet/GoogLeNet), "
        "add conv3x3 + GAP + linear",
    )
    p.add_argument("--gap-width", type=positive, default=1024, help="units of the added conv (default: %(default)s)")
    p.add_argument(
        "--epochs",
        type=positive,
        help="passes over the training set (default: 10 for the fine-tuning recipe, see --freeze; otherwise 30)",
    )
    p.add_argument(
        "--batch-size", type=positive, default=64, metavar="N", help="images per step (default: %(default)s)"
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="(default: %(default)s)")
    p.add_argument(
        "--lr", type=float, help="peak learning rate (default: 0.1 SGD from scratch, 0.01 SGD fine-tuning, 1e-3 AdamW)"
    )
    p.add_argument(
        "--new-lr-scale",
        type=float,
        metavar="X",
        help="learning-rate factor of the layers that start from random weights (default: 10 when fine-tuning, "
        "as wsolevaluation)",
    )
    p.add_argument("--weight-decay", type=float, help="(default: 1e-4 fine-tuning, 5e-4 from scratch)")
    p.add_argument(
        "--schedule", choices=SCHEDULES, default="cosine", help="learning-rate schedule (default: %(default)s)"
    )
    p.add_argument(
        "--size", type=positive, help="input side in pixels (default: 64 for gapnet, 448 for the recipe, else 224)"
    )
    p.add_argument(
        "--freeze",
        default="auto",
        metavar="LAYER",
        help="keep LAYER and everything before it as pretrained ('none': train everything; default: the fine-tuning "
        "recipe's stage for pretrained "
        + ", ".join(f"{arch} ({layer})" for arch, layer in FROZEN_STAGE.items())
        + ", else none)",
    )
    p.add_argument(
        "--augment",
        choices=AUGMENTS,
        help="images: random crops and flips of the images every epoch; features: the frozen layers run once per "
        "image (and its mirror image) and every epoch crops their output (default: features for the recipe)",
    )
    p.add_argument(
        "--min-scale",
        type=fraction,
        help="smallest crop area, a fraction of the image or frozen-layer output (default: 0.35 images, 0.5 features)",
    )
    p.add_argument(
        "--hide",
        type=fraction,
        metavar="P",
        help="Hide-and-Seek: blank each cell of a grid over the input with probability P (default: 0.5 for the "
        "recipe, else 0)",
    )
    p.add_argument(
        "--hide-grid", type=positive, default=4, metavar="N", help="cells per side of that grid (default: %(default)s)"
    )
    p.add_argument("--label-smoothing", type=fraction, default=0.0, help="(default: %(default)s)")
    p.add_argument(
        "--calibrate",
        type=int,
        metavar="N",
        help="hold N boxed images of each class out of training and report the test accuracy at the CAM "
        "thresholds chosen on them (default: 2 for the recipe, else 0)",
    )
    p.add_argument("--no-flip", action="store_true", help="no horizontal flips")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initialization, shuffling and augmentation (default: %(default)s)",
    )
    p.add_argument(
        "--workers", type=positive, default=2, metavar="N", help="threads decoding images (default: %(default)s)"
    )
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda if available, else cpu)")
    p.add_argument("--resume", action="store_true", help="continue the run recorded in --out")
    p.add_argument("--no-eval", action="store_true", help="skip the test-set evaluation at the end")
    p.add_argument("--json", metavar="FILE", help="results file (default: the --out path with .json)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train, evaluate on the test set, write the model file and the JSON."""
    from ..datasets.registry import open_train_test
    from ..distributed import join
    from ..reports.summary import format_summary
    from ..runtime import keep_freed_memory
    from ..training.train import TrainConfig, assess, train
    from ..utils import versions, write_json

    keep_freed_memory()
    train_set, test_set = open_train_test(
        args.data, args.format, test=args.test, images=args.images, classes=args.class_map
    )
    convert = None
    if args.convert_gap:
        convert = {"width": args.gap_width, **({} if args.convert_gap == "auto" else {"layer": args.convert_gap})}
    config = TrainConfig(
        arch=args.arch,
        pretrained=args.pretrained,
        weights=args.weights,
        convert_gap=convert,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        new_lr_scale=args.new_lr_scale,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        size=args.size,
        freeze=None if args.freeze == "none" else args.freeze,
        augment=args.augment,
        min_scale=args.min_scale,
        hide=args.hide,
        hide_grid=args.hide_grid,
        label_smoothing=args.label_smoothing,
        calibrate=args.calibrate,
        hflip=not args.no_flip,
        seed=args.seed,
        workers=args.workers,
    )
    device = resolve_device(args.device)
    here = join(device)  # the process group of a torchrun launch (nothing to join otherwise)
    classes = len(train_set.class_names or [])
    held = f", {config.calibrate} a class held out to calibrate on" if config.calibrate else ""
    processes = f", {here.size} processes of {config.batch_size} images a step" if here.distributed else ""
    if here.is_main:
        print(
            f"camloc: training {args.arch} on {train_set.name} ({len(train_set)} images, {classes} classes{held}), "
            f"{config.epochs} epochs at {config.size} px, {device}{processes}",
            file=sys.stderr,
        )
    result = train(config, train_set, args.out, resume=args.resume, device=device)
    seconds = sum(h["seconds"] for h in result.history)
    report = {
        "prepare_seconds": result.prepare_seconds,
        "model": str(args.out),
        "data": str(Path(args.data).resolve()),
        "config": {**vars(config)},
        "train_images": len(train_set),
        "train_seconds": seconds,
        "train_images_per_s": sum(h["images"] for h in result.history) / seconds if seconds else 0.0,
        "processes": here.size,
        "history": result.history,
        "skipped": result.skipped,
        "versions": versions(),
    }
    if test_set is not None and not args.no_eval:
        scores = assess(result.model, test_set, config.preprocess(), workers=args.workers, held_out=result.held_out)
        report.update(test=test_set.name, **scores)
    if not here.is_main:  # rank 0 writes, prints and gives the exit status for the run
        return 0
    if "cam" in report:
        print(format_summary(report["cam"], f"{args.out} on {report['test']}: CAM boxes (wsol protocol)"))
        print(
            format_summary(
                report["center"], "the same images, best fixed centred box (--baseline center)", baseline=True
            )
        )
    json_path = write_json(report, args.json or Path(args.out).with_suffix(".json"))
    print(f"camloc: model in {args.out}, results in {json_path}")
    return report_skipped(result.skipped)
