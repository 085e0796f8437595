"""``camloc boxes``: weak labels out: a classifier's CAM boxes as COCO, Pascal VOC or YOLO annotations."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

from ..boxes.rules import BOX_RULES
from ..datasets.labels import IMAGE_MODES
from ..datasets.registry import BOX_FORMATS
from ..errors import DatasetError, InvalidArgument, did_you_mean
from .common import (
    add_dataset_args,
    add_model_args,
    add_overwrite_arg,
    check_outputs,
    fraction,
    load_method,
    lock_output,
    nothing_left_unless_done,
    positive,
    release_locks,
    report_skipped,
    sets_parameter,
)

__all__ = ["register", "run"]


def formats(text: str) -> list[str]:
    """``coco,voc`` -> the format names, each checked."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in BOX_FORMATS]
    if bad or not names:
        hint = did_you_mean(bad[0], BOX_FORMATS) if bad else ""
        raise argparse.ArgumentTypeError(f"expected formats among {', '.join(BOX_FORMATS)}, got {text!r}{hint}")
    return names


def val_fraction(text: str) -> float:
    """A share in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def _output_args(p: argparse.ArgumentParser) -> None:
    """How the formats' folders hold the images, and the val split."""
    p.add_argument(
        "--images-as",
        choices=IMAGE_MODES,
        default=None,
        help="how each format's folder holds the images: link = a symbolic link per image (relative where OUT and the "
        "data share a filesystem: move them together and the links hold), copy = a copy (a self-contained dataset), "
        "none = no image folders (default: link)",
    )
    p.add_argument(
        "--val-fraction",
        type=val_fraction,
        default=0.1,
        metavar="F",
        help="share of the images put in the val split, chosen by --seed (default: %(default)s; 0: all in train)",
    )
    p.add_argument("--seed", type=int, default=0, help="chooses the val images (default: %(default)s)")
    p.add_argument(
        "--class-name",
        metavar="NAME",
        help="write every box as this one class (e.g. bird): labels for a one-class detector (each box is still "
        "of its image's class; COCO AP then scores the boxes as that one class)",
    )


THRESHOLD_HELP = (
    "tau, the rule's threshold (default: the model file's own for the paper rule, which camloc train chooses on "
    "training images' boxes; else 0.2)"
)


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument(
        "data",
        nargs="+",
        metavar="DATA",
        help="a dataset evaluate reads (boxes of each image's labelled class), an ImageFolder tree (the class of its "
        "folder), or image files and folders of images (the model's top classes)",
    )
    sets_parameter(
        p.add_argument("--out", metavar="DIR", default="out/boxes", help="output folder (default: %(default)s)"),
        "out_dir",
    )
    p.add_argument(
        "--format",
        dest="formats",
        type=formats,
        action="append",
        metavar="coco,voc,yolo",
        help="annotation formats, comma-separated or repeated (default: coco), each a dataset of its own in "
        "OUT/FORMAT: "
        "coco = annotations.json (+ train.json, val.json) + images/; voc = VOCdevkit/VOC2012/ (Annotations/, "
        "JPEGImages/, ImageSets/Main/{train,val,trainval}.txt); yolo = data.yaml + images/{train,val}/ + "
        "labels/{train,val}/ (ultralytics' layout)",
    )
    _output_args(p)
    g = p.add_argument_group("boxes")
    g.add_argument(
        "--rule",
        choices=BOX_RULES,
        help="paper: pixels >= tau x the map's max, largest 8-connected component (default); wsol: wsolevaluation's "
        "largest contour above tau of the min-max map; all: every component above --min-area, each its own box; "
        "authors: the CAM authors' box generator (fixed thresholds)",
    )
    t = g.add_mutually_exclusive_group()
    t.add_argument("--threshold", type=fraction, help=THRESHOLD_HELP)
    t.add_argument(
        "--threshold-from",
        metavar="RESULTS.json",
        help="take tau (and the rule) from camloc evaluate --protocol wsol's results (its MaxBoxAcc threshold, wsol "
        "rule) or from an earlier camloc boxes run's summary.json",
    )
    t.add_argument(
        "--calibrate",
        metavar="DATA",
        help="first choose tau of the rule on this labelled dataset with boxes (the highest CorLoc), then use it",
    )
    g.add_argument(
        "--min-area",
        type=fraction,
        default=0.01,
        help="all rule: the smallest component boxed, as a fraction of the image (default: %(default)s)",
    )
    g.add_argument(
        "--topk",
        type=positive,
        default=1,
        metavar="K",
        help="images without labels: box the K best classes (default: 1)",
    )
    g.add_argument(
        "--min-score",
        type=fraction,
        default=0.0,
        metavar="P",
        help="images without labels: only classes of probability >= P (default: %(default)s)",
    )
    g.add_argument(
        "--classes-from",
        choices=["labels", "model"],
        default="labels",
        help="labels: box each image's labelled class where the data has labels; model: the model's top classes "
        "(default: %(default)s)",
    )
    g.add_argument("--gt", metavar="DATA", help="ground truth to score the boxes by (default: DATA's own boxes)")
    p.add_argument("--resume", action="store_true", help="continue the run recorded in OUT/journal.jsonl")
    add_overwrite_arg(p)
    p.add_argument(
        "--batch-size", type=positive, default=32, metavar="N", help="images per forward pass (default: %(default)s)"
    )
    p.add_argument(
        "--workers", type=positive, default=2, metavar="N", help="threads for decoding and boxes (default: %(default)s)"
    )
    p.add_argument("--no-links", action="store_true", help="the same as --images-as none")
    p.add_argument(
        "--no-ap", action="store_true", help="skip COCO AP (CorLoc is still given where there is ground truth)"
    )
    add_dataset_args(p, format_flag="--data-format")
    add_model_args(  # boxes' own default input size, chosen by measurement (docs/weak-labels.md)
        p,
        resize_default="full",
        size_help="input side in pixels (default with --resize full: the whole photo at shorter side max(own, "
        "min(448, 2 x own)): 448, as --size 392 gives it, for ImageNet's 224-pixel models, whose own is 256; "
        "else the model's)",
    )
    p.set_defaults(run=run)


def _source(args: argparse.Namespace, class_names):
    """DATA as a dataset when it is one, else as a list of image files (labels unknown)."""
    from ..datasets.registry import detect_format, open_dataset
    from ..evaluation.explain import collect_images
    from ..utils import is_image_file

    def dataset(path: str, format: str):
        return open_dataset(
            path, format, images=args.images, split=args.split, classes=args.class_map, one_based=args.one_based
        )

    if args.format != "auto":
        if len(args.data) != 1:
            raise InvalidArgument("data", "--data-format reads one dataset: give one DATA")
        return dataset(args.data[0], args.format)
    if len(args.data) == 1 and not is_image_file(args.data[0]):
        try:
            format, _ = detect_format(Path(args.data[0]), args.split)
        except DatasetError:
            format = None
        labelled = args.classes_from == "labels"
        if format == "folder" and labelled and args.class_map is None and class_names is not None:
            strangers = sorted(set(dataset(args.data[0], "folder").class_names or []) - set(class_names))
            if strangers:  # folder labels are indices in sorted folder order: the model's classes only by name
                raise DatasetError(
                    f"the class folders are not classes of the model (e.g. {strangers[0]!r}): "
                    "name them as the model's classes, give --class-map, or use --classes-from model",
                    args.data[0],
                )
            return open_dataset(args.data[0], "folder", classes=list(class_names))
        if format is not None:
            return dataset(args.data[0], format)
    paths = collect_images(args.data)
    if not paths:
        raise InvalidArgument("data", f"no image files in {' '.join(args.data)}")
    return paths


def _outputs(out: Path, formats: list[str]) -> list[Path]:
    """What a run writes in ``out``: the journal (and torchrun ranks' journals), the summary, a folder per format."""
    return [out / "journal.jsonl", *out.glob("journal.jsonl.rank*"), out / "summary.json", *(out / f for f in formats)]


def _clear_outputs(args: argparse.Namespace, formats: list[str]) -> None:
    """Refuse to write over an earlier run's files in ``--out`` (``--overwrite``: remove them first)."""
    out = Path(args.out)
    lock_output(out / "journal.jsonl")
    check_outputs(args, *_outputs(out, formats), resumable=True)
    if args.overwrite and not args.resume and _is_main():
        _remove_outputs(out, formats)


def _is_main() -> bool:
    """Whether this process writes the run's shared files (rank 0 of a torchrun launch, or the only process)."""
    from ..distributed import world

    return world().is_main


def _remove_outputs(out: Path, formats: list[str]) -> None:
    """Remove what a run wrote in ``out`` (and ``out`` itself when that leaves it empty)."""
    for path in _outputs(out, formats):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def run(args: argparse.Namespace) -> int:
    """Box every image, write the annotation files, print the summary."""
    from ..datasets.registry import open_dataset
    from ..distributed import world
    from ..evaluation.results import threshold_from
    from ..evaluation.weak_labels import BoxSettings, box_input, calibrate_threshold, export_boxes
    from ..reports.summary import format_boxes_summary
    from ..utils import is_image_file

    missing = [d for d in args.data if not Path(d).exists()]
    if [d for d in missing if not is_image_file(d)] or len(missing) == len(args.data):
        raise FileNotFoundError(2, "no such file or folder", missing[0])
    chosen = [f for group in (args.formats or [["coco"]]) for f in group]
    _clear_outputs(args, chosen)
    method, info = load_method(args)
    if args.size is None and info.preprocess.mode == "full":  # measured: docs/weak-labels.md, "Input size"
        info = dataclasses.replace(info, preprocess=box_input(info.preprocess))
    source = _source(args, info.class_names)
    rule, threshold, origin = args.rule or "paper", args.threshold, "given"
    if threshold is None:  # the model's own for the paper rule (camloc train chose it), else 0.2
        own = rule == "paper" and info.box_threshold is not None
        threshold, origin = (info.box_threshold, "the model's") if own else (0.2, "default")
    if args.threshold_from:
        threshold, found_with = threshold_from(args.threshold_from)
        if args.rule and args.rule != found_with:
            raise InvalidArgument(
                "rule",
                f"--threshold-from {args.threshold_from} holds a threshold of the {found_with} rule, not of "
                f"{args.rule}; drop --rule or use --rule {found_with}",
            )
        rule, origin = found_with, f"from {Path(args.threshold_from).resolve()}"
    settings = BoxSettings(
        rule=rule,
        threshold=threshold,
        min_area=args.min_area,
        topk=args.topk,
        min_score=args.min_score,
        use_labels=args.classes_from == "labels",
    )
    if args.calibrate:
        labelled = open_dataset(args.calibrate, split=args.split, classes=args.class_map)
        found = calibrate_threshold(
            labelled,
            method,
            info=info,
            preprocess=info.preprocess,
            settings=settings,
            batch_size=args.batch_size,
            workers=args.workers,
        )
        settings = dataclasses.replace(settings, threshold=found.threshold)
        origin = f"calibrated on {Path(args.calibrate).resolve()}: CorLoc {found.corloc:.2f} over {found.images} images"
        if world().is_main:
            print(
                f"camloc: calibrated the {rule} rule on {found.images} images: threshold {found.threshold:g}",
                file=sys.stderr,
            )
    ground_truth = open_dataset(args.gt, split=args.split, classes=args.class_map) if args.gt else None
    data = [str(Path(d).resolve()) for d in args.data]
    config = {"model": info.name, "method": args.method, "data": data, "threshold_source": origin}
    if args.no_links and args.images_as not in (None, "none"):
        raise InvalidArgument("images_as", f"--no-links and --images-as {args.images_as} disagree: give one")
    out = Path(args.out)
    with nothing_left_unless_done(args, out / "journal.jsonl", out / "summary.json", *(out / f for f in chosen)):
        result = export_boxes(
            source,
            method,
            info=info,
            preprocess=info.preprocess,  # --resize (default full, the whole photo)
            out_dir=args.out,
            settings=settings,
            formats=chosen,
            ground_truth=ground_truth,
            batch_size=args.batch_size,
            workers=args.workers,
            resume=args.resume,
            images="none" if args.no_links else args.images_as or "link",
            val_fraction=args.val_fraction,
            seed=args.seed,
            ap=not args.no_ap,
            class_name=args.class_name,
            config=config,
        )
    if not world().is_main:  # rank 0 of a torchrun launch prints for the run
        return 0
    if result.skipped and not result.summary.get("images"):  # nothing read: nothing left to stand in the way
        release_locks()
        _remove_outputs(Path(args.out), chosen)
        more = f" (and {len(result.skipped) - 1} more)" if len(result.skipped) > 1 else ""
        first = result.skipped[0]
        print(f"camloc: error: no image could be read: {first['path']}: {first['error']}{more}", file=sys.stderr)
        return 2
    title = f"{info.name}, {args.method}, {rule} rule at {settings.threshold:g} ({info.preprocess.mode} resize)"
    print(format_boxes_summary(result.summary, title))
    written = ", ".join(f"{k} in {v}" for k, v in result.files.items())
    print(f"camloc: {written}")
    return report_skipped(result.skipped)
