"""The training side of the command line: synth, train, features, probe, finegrained."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import (
    _add_dataset_args,
    _add_model_args,
    _fraction,
    _load,
    _open_data,
    _positive,
    _report_skipped,
    format_summary,
)


def register(sub) -> None:
    sy = sub.add_parser("synth", help="write a procedurally generated WSOL dataset (train/ and test/ in the csv layout)")
    sy.add_argument("out", metavar="OUT")
    sy.add_argument("--kind", choices=["shapes", "finegrained"], default="shapes", help="shapes: classes are distinct shapes; finegrained: one body, classes differ in a small part (default: %(default)s)")
    sy.add_argument("--train", type=_positive, help="training images (default: the generator's)")
    sy.add_argument("--test", type=_positive, help="test images (default: the generator's)")
    sy.add_argument("--size", type=_positive, help="image side in pixels (default: the generator's)")
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--layout", choices=["csv", "cub"], default="csv", help="csv: OUT/train + OUT/test; cub: one CUB-200-2011 folder (default: %(default)s)")

    tr = sub.add_parser("train", help="train a GAP classifier on image labels alone, then score its CAM boxes")
    tr.add_argument("data", metavar="DATA", help="training data: a folder with train/ (and test/) datasets, a CUB-200-2011 folder, or one dataset (any format evaluate reads, or class subfolders)")
    tr.add_argument("--out", required=True, metavar="MODEL.pt", help="model file, rewritten after every epoch")
    tr.add_argument("--test", metavar="DATA", help="test set (default: DATA/test, DATA/val or CUB's test split)")
    tr.add_argument("--format", choices=["auto", "csv", "wsol", "cub", "voc", "folder"], default="auto")
    tr.add_argument("--images", metavar="DIR", help="image root for wsol metadata / XML annotations")
    tr.add_argument("--class-map", metavar="FILE", help="class names, one per line, in index order")
    tr.add_argument("--arch", default="gapnet", help="gapnet (camloc's small GAP net), a torchvision name or timm:<name> (default: %(default)s)")
    tr.add_argument("--pretrained", action="store_true", help="start from the architecture's pretrained weights (offline; all but the classifier)")
    tr.add_argument("--weights", metavar="PATH", help="start from this weight file")
    tr.add_argument("--convert-gap", nargs="?", const="auto", metavar="LAYER", help="train the paper's -GAP variant: cut after LAYER (default: the paper's layer for VGG/AlexNet/GoogLeNet), add conv3x3 + GAP + linear")
    tr.add_argument("--gap-width", type=_positive, default=1024, help="units of the added conv (default: %(default)s)")
    tr.add_argument("--epochs", type=_positive, default=20, help="(default: %(default)s)")
    tr.add_argument("--batch-size", type=_positive, default=64, metavar="N")
    tr.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    tr.add_argument("--lr", type=float, help="peak learning rate (default: 0.1 SGD from scratch, 0.01 SGD fine-tuning, 1e-3 AdamW)")
    tr.add_argument("--weight-decay", type=float, default=5e-4)
    tr.add_argument("--schedule", choices=["cosine", "step", "constant"], default="cosine")
    tr.add_argument("--size", type=_positive, help="input side in pixels (default: 64 for gapnet, 224 otherwise)")
    tr.add_argument("--min-scale", type=_fraction, default=0.35, help="random-resized-crop smallest area fraction (default: %(default)s)")
    tr.add_argument("--no-flip", action="store_true", help="no horizontal flips")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--workers", type=_positive, default=2, metavar="N", help="threads decoding images (default: %(default)s)")
    tr.add_argument("--device", help="cpu, cuda, ... (default: cuda if available, else cpu)")
    tr.add_argument("--resume", action="store_true", help="continue the run recorded in --out")
    tr.add_argument("--no-eval", action="store_true", help="skip the test-set evaluation at the end")
    tr.add_argument("--json", metavar="FILE", help="results file (default: the --out path with .json)")

    fe = sub.add_parser("features", help="GAP feature vectors of a dataset's images, to a .npz file")
    fe.add_argument("data", metavar="DATA", help="dataset folder (any format evaluate reads, or class subfolders)")
    _add_dataset_args(fe)
    fe.add_argument("--out", required=True, metavar="FILE.npz")
    fe.add_argument("--crop", choices=["none", "gt"], default="none", help="gt: crop each image to its ground-truth box first (default: %(default)s)")
    fe.add_argument("--batch-size", type=_positive, default=32, metavar="N")
    fe.add_argument("--workers", type=_positive, default=2, metavar="N")
    _add_model_args(fe)

    pr = sub.add_parser("probe", help="fit a linear classifier on GAP features; the result is a model file whose CAMs are the new classes'")
    pr.add_argument("train_features", metavar="TRAIN.npz", help="features of the training images (camloc features)")
    pr.add_argument("--test", metavar="TEST.npz", help="features of the test images: report accuracy on them")
    pr.add_argument("--kind", choices=["svm", "logistic"], default="svm", help="linear SVM (as the paper) or logistic regression (default: %(default)s)")
    pr.add_argument("--C", type=float, default=1.0, help="inverse regularization strength (default: %(default)s)")
    pr.add_argument("--out", metavar="PROBE.pt", help="model file: the backbone with the probe as its GAP head, for every other command's --model")
    pr.add_argument("--json", metavar="FILE", help="results file")

    fg = sub.add_parser("finegrained", help="the paper's fine-grained experiment: probe on full images, on CAM-box crops and on ground-truth crops")
    fg.add_argument("data", metavar="DATA", help="a folder with train/ and test/ datasets, or a CUB-200-2011 folder")
    fg.add_argument("--test", metavar="DATA", help="test set (default: DATA/test, DATA/val or CUB's test split)")
    fg.add_argument("--format", choices=["auto", "csv", "wsol", "cub", "voc", "folder"], default="auto")
    fg.add_argument("--images", metavar="DIR", help="image root for wsol metadata / XML annotations")
    fg.add_argument("--class-map", metavar="FILE", help="class names, one per line, in index order")
    fg.add_argument("--mode", choices=["probe", "train"], default="probe", help="probe: linear probes on --model's GAP features (the paper); train: train --arch from scratch on full images, CAM crops and GT crops (default: %(default)s)")
    fg.add_argument("--work", metavar="DIR", default="out/finegrained", help="train mode: where the three models and the crops go; a rerun resumes from them (default: %(default)s)")
    fg.add_argument("--arch", default="gapnet", help="train mode: architecture (default: %(default)s)")
    fg.add_argument("--epochs", type=_positive, default=20, help="train mode: epochs per model (default: %(default)s)")
    fg.add_argument("--seed", type=int, default=0, help="train mode: seed (default: %(default)s)")
    fg.add_argument("--localizer", metavar="MODEL", help="probe mode: box images with this model's CAM of its own top-1 class instead of the probe's CAM")
    fg.add_argument("--kind", choices=["svm", "logistic"], default="svm", help="probe (default: %(default)s, as the paper)")
    fg.add_argument("--C", type=float, default=1.0, help="inverse regularization strength (default: %(default)s)")
    fg.add_argument("--threshold", type=_fraction, default=0.2, help="CAM box threshold, fraction of the max (default: %(default)s)")
    fg.add_argument("--json", metavar="FILE", default="out/finegrained/results.json")
    fg.add_argument("--batch-size", type=_positive, default=32, metavar="N")
    fg.add_argument("--workers", type=_positive, default=2, metavar="N")
    _add_model_args(fg)


def synth(args: argparse.Namespace) -> int:
    from .datasets.synthetic import generate

    options = {k: v for k, v in (("train", args.train), ("test", args.test), ("size", args.size)) if v is not None}
    train_set, test_set = generate(args.out, args.kind, seed=args.seed, layout=args.layout, **options)
    classes = len(train_set.class_names or [])
    print(f"camloc: wrote {len(train_set)} training and {len(test_set)} test images of {classes} classes ({args.kind}) to {args.out}")
    return 0


def _train_sets(args: argparse.Namespace):
    """The training set and the test set (or None) that DATA and --test name."""
    from .datasets import DatasetError, open_dataset

    def read(path: Path, split: str = "test"):
        return open_dataset(path, args.format, images=args.images, split=split, classes=args.class_map)

    root = Path(args.data)
    test = read(Path(args.test)) if args.test else None
    if (root / "images.txt").is_file() and args.format in ("auto", "cub"):
        return read(root, "train"), test or read(root, "test")
    if (root / "train").is_dir():
        if test is None:
            for name in ("test", "val"):
                if (root / name).is_dir():
                    test = read(root / name)
                    break
        return read(root / "train"), test
    try:
        return read(root, "train"), test
    except DatasetError as err:
        raise DatasetError(f"{err} (or give a folder holding train/ and test/)") from None


def train(args: argparse.Namespace) -> int:
    import torch

    from .reports import write_json
    from .runtime import keep_freed_memory
    from .train import TrainConfig, assess
    from .train import train as run

    keep_freed_memory()
    train_set, test_set = _train_sets(args)
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
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        size=args.size,
        min_scale=args.min_scale,
        hflip=not args.no_flip,
        seed=args.seed,
        workers=args.workers,
    )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"camloc: training {args.arch} on {train_set.name} ({len(train_set)} images, {len(train_set.class_names or [])} classes), {config.epochs} epochs, {device}", file=sys.stderr)
    result = run(config, train_set, args.out, resume=args.resume, device=device)
    report = {
        "model": str(args.out),
        "data": str(Path(args.data).resolve()),
        "config": {**vars(config)},
        "train_images": len(train_set),
        "train_seconds": sum(h["seconds"] for h in result.history),
        "train_images_per_s": _mean_rate(result.history),
        "history": result.history,
        "skipped": result.skipped,
    }
    if test_set is not None and not args.no_eval:
        scores = assess(result.model, test_set, config.preprocess(), workers=args.workers)
        report.update(test=test_set.name, **scores)
        print(format_summary(scores["cam"], f"{args.out} on {test_set.name}: CAM boxes (wsol protocol)"))
        print(format_summary(scores["center"], "the same images, best fixed centred box (--baseline center)", baseline=True))
    json_path = write_json(report, args.json or Path(args.out).with_suffix(".json"))
    print(f"camloc: model in {args.out}, results in {json_path}")
    return _report_skipped(result.skipped)


def _mean_rate(history: list[dict]) -> float:
    seconds = sum(h["seconds"] for h in history)
    return sum(h["images"] for h in history) / seconds if seconds else 0.0



def features(args: argparse.Namespace) -> int:
    from .probe import extract_features, save_features

    dataset = _open_data(args)
    cam, info = _load(args)
    crops = None
    if args.crop == "gt":
        from .finegrained import gt_boxes

        crops = gt_boxes(dataset)
    result = extract_features(
        cam.model, dataset, info.preprocess, crops=crops, batch_size=args.batch_size, workers=args.workers, progress=sys.stderr.isatty()
    )
    result.meta.update(model=args.model, weights=args.weights, data=str(Path(args.data).resolve()), crop=args.crop)
    save_features(result, args.out)
    print(f"camloc: {len(result.labels)} feature vectors of {result.values.shape[1]} values in {args.out}")
    return _report_skipped(result.skipped)


def probe(args: argparse.Namespace) -> int:
    from .probe import fit_probe, load_features, save_probe
    from .reports import write_json

    train_features = load_features(args.train_features)
    fitted = fit_probe(train_features, kind=args.kind, C=args.C)
    report = {"train_features": args.train_features, "kind": args.kind, "C": args.C, "train_accuracy": fitted.accuracy(train_features)}
    print(f"camloc: {args.kind} probe, training accuracy {report['train_accuracy']:.2f} % ({len(train_features.labels)} images)")
    if args.test:
        test_features = load_features(args.test)
        report.update(test_features=args.test, test_accuracy=fitted.accuracy(test_features))
        print(f"camloc: test accuracy {report['test_accuracy']:.2f} % ({len(test_features.labels)} images)")
    if args.out:
        meta = train_features.meta
        if not meta.get("model"):
            raise ValueError(f"{args.train_features}: does not name its backbone model; write it with `camloc features`")
        save_probe(fitted, args.out, backbone=meta["model"], backbone_weights=meta.get("weights"), preprocess=_preprocess_from(meta))
        report["model"] = args.out
        print(f"camloc: probe model in {args.out} (use it as --model {args.out})")
    if args.json:
        write_json(report, args.json)
    return 0


def _preprocess_from(meta: dict):
    from .checkpoint import preprocess_from_dict

    value = meta.get("preprocess")
    return preprocess_from_dict(value) if isinstance(value, dict) else None


def finegrained(args: argparse.Namespace) -> int:
    from .finegrained import finegrained as run
    from .reports import write_json

    train_set, test_set = _train_sets(args)
    if test_set is None:
        raise ValueError(f"{args.data}: no test set found; give a folder with train/ and test/, or --test DATA")
    if args.mode == "train":
        return _finegrained_train(args, train_set, test_set)
    cam, info = _load(args)
    localizer = None
    if args.localizer:
        from .zoo import load_model, model_info

        localizer = load_model(args.localizer, device=next(cam.model.parameters()).device)
    result = run(
        cam.model,
        train_set,
        test_set,
        info.preprocess,
        kind=args.kind,
        C=args.C,
        threshold=args.threshold,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=sys.stderr.isatty(),
        localizer=localizer,
        localizer_preprocess=None if localizer is None else model_info(localizer).preprocess,
    )
    path = write_json({"model": info.name, "localizer": args.localizer, "data": str(Path(args.data).resolve()), "mode": "probe", "kind": args.kind, "C": args.C, **result.to_json()}, args.json)
    boxes = f", boxes from {args.localizer}" if args.localizer else ""
    return _print_finegrained(result, f"{info.name} + {args.kind} probe{boxes}, on {test_set.name}", path)


def _finegrained_train(args: argparse.Namespace, train_set, test_set) -> int:
    from .finegrained import finegrained_train
    from .reports import write_json
    from .runtime import keep_freed_memory
    from .train import TrainConfig

    keep_freed_memory()
    config = TrainConfig(arch=args.arch, epochs=args.epochs, size=args.size, seed=args.seed, workers=args.workers)
    result = finegrained_train(train_set, test_set, config, args.work, threshold=args.threshold, progress=sys.stderr.isatty())
    data = str(Path(args.data).resolve())
    path = write_json({"data": data, "mode": "train", "config": vars(config), "work": args.work, **result.to_json()}, args.json)
    return _print_finegrained(result, f"{args.arch} trained on each kind of image, {test_set.name}", path)


def _print_finegrained(result, title: str, path) -> int:
    rows = [("full image", result.full), ("crop to the CAM box", result.cam_crop), ("crop to the GT box", result.gt_crop)]
    print(f"{title} ({result.train_images} train / {result.test_images} test images)")
    for name, value in rows:
        print(f"  {name:<28}{value:>8.2f}")
    print(f"  {'CAM boxes with IoU > 0.5':<28}{result.localized:>8.2f}")
    print(f"camloc: results in {path}")
    return _report_skipped(result.skipped)
