"""``camloc train``: fit a GAP classifier on image labels alone, then score its CAM boxes."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from ..datasets.registry import FORMATS
from ..training.config import AUGMENTS, FROZEN_STAGE, OPTIMIZERS, SCHEDULES, TrainConfig, field_help
from ..training.wsol import WSOL_LOSSES
from .common import (
    add_overwrite_arg,
    check_outputs,
    fraction,
    lock_output,
    positive,
    report_skipped,
    resolve_device,
)

__all__ = ["add_train_data_args", "register", "run", "train_config"]


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
    """The command's arguments: the data, then :class:`~camloc.training.TrainConfig`'s fields in groups."""
    add_train_data_args(p)
    p.add_argument("--out", required=True, metavar="MODEL.pt", help="model file, rewritten after every epoch")
    _model_args(p.add_argument_group("the network"))
    _optimizer_args(p.add_argument_group("optimization"))
    _augment_args(p.add_argument_group("augmentation"))
    _run_args(p.add_argument_group("the run"))
    p.set_defaults(run=run)


# The TrainConfig fields that are flags of the same name (--batch-size: batch_size); their help and
# default are the field's (training/config.py), written there once.
CONFIG_FLAGS = (
    "arch", "pretrained", "weights", "epochs", "batch_size", "optimizer", "lr", "new_lr_scale", "weight_decay",
    "schedule", "size", "freeze", "augment", "min_scale", "hide", "hide_grid", "label_smoothing", "calibrate",
    "box_images", "seed", "workers", "wsol_loss", "map_size",
)  # fmt: skip
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _config_flag(group: argparse._ArgumentGroup, name: str, note: str = "", **options: Any) -> None:
    """The flag of :class:`TrainConfig`'s field ``name``: the field's description and default."""
    default = _DEFAULTS[name]
    text = field_help(name).rstrip(".").replace("%", "%%") + note
    if default not in (None, "auto") and not isinstance(default, bool):
        text += " (default: %(default)s)"
    group.add_argument("--" + name.replace("_", "-"), default=default, help=text, **options)


def _model_args(group: argparse._ArgumentGroup) -> None:
    _config_flag(group, "arch")
    _config_flag(group, "pretrained", action="store_true")
    _config_flag(group, "weights", metavar="PATH")
    group.add_argument(
        "--convert-gap",
        nargs="?",
        const="auto",
        metavar="LAYER",
        help="train the paper's -GAP variant: cut after LAYER (default: the paper's layer for VGG/AlexNet/GoogLeNet), "
        "add conv3x3 + GAP + linear",
    )
    group.add_argument(
        "--gap-width", type=positive, default=1024, help="units of the added conv (default: %(default)s)"
    )
    stages = ", ".join(f"{arch}: {layer}" for arch, layer in FROZEN_STAGE.items())
    _config_flag(group, "freeze", f" (the recipe's stages: {stages})", metavar="LAYER")


def _optimizer_args(group: argparse._ArgumentGroup) -> None:
    _config_flag(group, "epochs", type=positive)
    _config_flag(group, "batch_size", type=positive, metavar="N")
    _config_flag(group, "optimizer", choices=OPTIMIZERS)
    _config_flag(group, "lr", type=float)
    _config_flag(group, "new_lr_scale", type=float, metavar="X")
    _config_flag(group, "weight_decay", type=float)
    _config_flag(group, "schedule", choices=SCHEDULES)
    _config_flag(group, "label_smoothing", type=fraction)
    _config_flag(group, "wsol_loss", choices=(*WSOL_LOSSES, "none", "auto"), metavar="NAME")
    group.add_argument(
        "--wsol-option",
        action="append",
        type=_option,
        default=[],
        metavar="NAME=VALUE",
        help=field_help("wsol_options").rstrip(".").replace("%", "%%") + "; repeat for several",
    )


def _augment_args(group: argparse._ArgumentGroup) -> None:
    _config_flag(group, "size", type=positive)
    _config_flag(group, "map_size", type=_size_or_none, metavar="S")
    _config_flag(group, "augment", choices=AUGMENTS)
    _config_flag(group, "min_scale", type=fraction)
    _config_flag(group, "hide", type=fraction, metavar="P")
    _config_flag(group, "hide_grid", type=positive, metavar="N")
    group.add_argument("--no-flip", action="store_true", help="no horizontal flips")


def _run_args(group: argparse._ArgumentGroup) -> None:
    _config_flag(group, "calibrate", type=int, metavar="N")
    _config_flag(group, "box_images", type=int, metavar="N")
    _config_flag(group, "seed", type=int)
    _config_flag(group, "workers", type=positive, metavar="N")
    group.add_argument("--device", help="cpu, cuda, ... (default: cuda if available, else cpu)")
    group.add_argument("--resume", action="store_true", help="continue the run recorded in --out")
    add_overwrite_arg(group)
    group.add_argument("--no-eval", action="store_true", help="skip the test-set evaluation at the end")
    group.add_argument("--json", metavar="FILE", help="results file (default: the --out path with .json)")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` that the flags describe."""
    convert = None
    if args.convert_gap:
        convert = {"width": args.gap_width, **({} if args.convert_gap == "auto" else {"layer": args.convert_gap})}
    settings = {name: getattr(args, name) for name in CONFIG_FLAGS}
    for name in ("freeze", "wsol_loss"):
        if settings[name] == "none":
            settings[name] = None
    options = dict(args.wsol_option) or None
    return TrainConfig(**settings, convert_gap=convert, hflip=not args.no_flip, wsol_options=options)


def _extras(config: TrainConfig) -> str:
    """What the run's first line says of its loss and map size, where they are not the plain ones."""
    loss = f" with {config.wsol_loss.upper()}'s loss" if config.wsol_loss else ""
    maps = f", maps read at {config.separate_map_size} px" if config.separate_map_size else ""
    return loss + maps


def _size_or_none(text: str) -> int | str | None:
    """``--map-size``: a side in pixels, ``none`` or ``auto``."""
    if text in ("none", "auto"):
        return None if text == "none" else text
    return positive(text)


def _option(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` of ``--wsol-option`` as ``(name, value)``."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def run(args: argparse.Namespace) -> int:
    """Train, evaluate on the test set, write the model file and the JSON."""
    from ..datasets.registry import open_train_test
    from ..distributed import barrier, join
    from ..evaluation.assess import assess
    from ..reports.summary import format_summary
    from ..runtime import keep_freed_memory
    from ..training.train import train
    from ..utils import versions, write_json

    keep_freed_memory()
    lock_output(args.out)
    check_outputs(args, args.out, args.json or Path(args.out).with_suffix(".json"), resumable=True)
    train_set, test_set = open_train_test(
        args.data, args.format, test=args.test, images=args.images, classes=args.class_map
    )
    config = train_config(args)
    device = resolve_device(args.device)
    here = join(device)  # the process group of a torchrun launch (nothing to join otherwise)
    if args.overwrite and not args.resume:  # the earlier model file holds the state train() would resume
        if here.is_main:
            Path(args.out).unlink(missing_ok=True)
        barrier()
    classes = len(train_set.class_names or [])
    held = f", {config.calibrate} a class held out to calibrate on" if config.calibrate else ""
    processes = f", {here.size} processes of {config.batch_size} images a step" if here.distributed else ""
    if here.is_main:
        print(
            f"camloc: training {args.arch} on {train_set.name} ({len(train_set)} images, {classes} classes{held}), "
            f"{config.epochs} epochs at {config.size} px{_extras(config)}, {device}{processes}",
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
        "boxes": result.boxes,
        "versions": versions(),
    }
    if test_set is not None and not args.no_eval:
        scores = assess(
            result.model,
            test_set,
            config.preprocess(),
            workers=args.workers,
            held_out=result.held_out,
            map_size=config.separate_map_size,
        )
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
    if result.boxes is not None:
        b = result.boxes
        print(
            f"camloc: box threshold {b['threshold']:g} (paper rule; camloc boxes, explain and serve use it): "
            f"CorLoc {b['corloc']:.2f} on {b['images']} training images, {b['input']}"
        )
    json_path = write_json(report, args.json or Path(args.out).with_suffix(".json"))
    print(f"camloc: model in {args.out}, results in {json_path}")
    return report_skipped(result.skipped)
