"""The `camloc` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from . import __version__

DEFAULT_MODEL = "mobilenet_v2"
METHOD_NAMES = ["cam", "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "scorecam", "eigencam"]


def _triple(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers R,G,B, got {text!r}")
    return values  # type: ignore[return-value]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL, help="torchvision name, timm:<name>, file.py:factory or package.module:factory (default: %(default)s)")
    g.add_argument("--weights", metavar="PATH", help="weight file to load instead of the cached pretrained one")
    g.add_argument("--classes", metavar="FILE", help="class names, one per line (default: the model's own, or indices)")
    g.add_argument("--mean", type=_triple, metavar="R,G,B", help="normalization mean (default: the model's, else ImageNet)")
    g.add_argument("--std", type=_triple, metavar="R,G,B", help="normalization std (default: the model's, else ImageNet)")
    g.add_argument("--size", type=_positive, metavar="S", help="input side in pixels (default: the model's, else 224)")
    g.add_argument("--resize", choices=["crop", "squash"], help="crop: shorter side then centre crop (torchvision eval); squash: resize to SxS (WSOL protocol). Default: crop")
    g.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    g.add_argument("--method", default="cam", choices=METHOD_NAMES, help="map method (default: %(default)s)")
    g.add_argument("--target-layer", metavar="NAME", help="module whose output the method explains (default: the last feature map)")


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dataset")
    g.add_argument("--format", choices=["auto", "csv", "wsol", "cub", "voc", "folder"], default="auto")
    g.add_argument("--images", metavar="DIR", help="image root for wsol metadata / XML annotations")
    g.add_argument("--split", default="test", choices=["train", "test", "all"], help="CUB split (default: %(default)s)")
    g.add_argument("--class-map", metavar="FILE", help="XML datasets: class names or synsets, one per line, in index order")
    g.add_argument("--one-based", action="store_true", help="XML boxes are 1-based (Pascal VOC)")


def _open_data(args: argparse.Namespace):
    from .datasets import open_dataset

    return open_dataset(args.data, args.format, images=args.images, split=args.split, classes=args.class_map, one_based=args.one_based)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camloc", description="Class activation maps and weakly-supervised localization for GAP CNNs.")
    parser.add_argument("--version", action="version", version=f"camloc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("explain", help="top-k class activation maps, boxes, grids and JSON for images")
    ex.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    ex.add_argument("--topk", type=_positive, default=5, help="classes per image (default: %(default)s)")
    ex.add_argument("--out", default="out/explain", metavar="DIR", help="where the PNG grids go (default: %(default)s)")
    ex.add_argument("--json", metavar="FILE", help="results file (default: DIR/results.json)")
    ex.add_argument("--batch-size", type=_positive, default=16, metavar="N")
    ex.add_argument("--threshold", type=_fraction, default=0.2, help="paper box threshold, fraction of the map's max (default: %(default)s)")
    ex.add_argument("--alpha", type=_fraction, default=0.5, help="heat-map opacity (default: %(default)s)")
    _add_model_args(ex)

    ev = sub.add_parser("evaluate", help="weakly-supervised localization metrics on a dataset with boxes (or masks)")
    ev.add_argument("data", metavar="DATA", help="dataset folder (boxes.csv layout, wsol metadata, CUB-200-2011, or XML annotations)")
    _add_dataset_args(ev)
    ev.add_argument("--protocol", choices=["wsol", "paper", "authors"], default="wsol", help="box protocol (default: %(default)s); see docs/protocols.md")
    ev.add_argument("--threshold", type=_fraction, default=0.2, help="paper rule threshold, fraction of the max (default: %(default)s)")
    ev.add_argument("--step", type=_fraction, default=0.01, help="CAM threshold step of the wsol sweep (default: %(default)s)")
    ev.add_argument("--json", metavar="FILE", default="out/evaluate/results.json", help="summary + curves (default: %(default)s)")
    ev.add_argument("--per-image", metavar="FILE.csv", help="append one row per image as it is computed")
    ev.add_argument("--resume", action="store_true", help="continue the run recorded in --per-image")
    ev.add_argument("--batch-size", type=_positive, default=32, metavar="N")
    ev.add_argument("--workers", type=_positive, default=2, metavar="N", help="threads for decoding and boxes (default: %(default)s)")
    ev.add_argument("--baseline", choices=["center"], help="score fixed centred boxes instead of CAM boxes (MaxBoxAcc = the best fixed centred box)")
    _add_model_args(ev)

    fa = sub.add_parser("faithfulness", help="deletion/insertion AUC, average drop and increase in confidence of map methods on a dataset", conflict_handler="resolve")
    fa.add_argument("data", metavar="DATA", help="dataset folder (any format evaluate reads; only the images and labels are used)")
    _add_dataset_args(fa)
    fa.add_argument("--limit", type=_positive, metavar="N", help="only the first N images")
    fa.add_argument("--target", choices=["predicted", "label"], default="predicted", help="class to explain and score: the model's top-1 (as RISE and Grad-CAM++) or the dataset label (default: %(default)s)")
    fa.add_argument("--steps", type=_positive, default=50, help="deletion/insertion steps (default: %(default)s)")
    fa.add_argument("--deletion-baseline", choices=["zero", "blur", "mean"], default="zero", help="what deleted pixels become (default: %(default)s, as RISE)")
    fa.add_argument("--insertion-baseline", choices=["zero", "blur", "mean"], default="blur", help="what insertion starts from (default: %(default)s, as RISE)")
    fa.add_argument("--out", metavar="FILE.md", default="out/faithfulness/results.md", help="markdown table (default: %(default)s)")
    fa.add_argument("--json", metavar="FILE", help="results file (default: the --out path with .json)")
    fa.add_argument("--batch-size", type=_positive, default=16, metavar="N")
    fa.add_argument("--chunk", type=_positive, default=64, metavar="N", help="perturbed images per forward pass (default: %(default)s)")
    fa.add_argument("--workers", type=_positive, default=2, metavar="N", help="threads for decoding (default: %(default)s)")
    _add_model_args(fa)
    fa.add_argument("--methods", "--method", type=_method_list, default=list(METHOD_NAMES), metavar="M1,M2,...", help=f"comma-separated methods of {','.join(METHOD_NAMES)} (default: all)")

    from . import cli_train

    cli_train.register(sub)

    demo = sub.add_parser("demo", help="explain scikit-image's sample photos (chelsea, coffee) with the default model")
    demo.add_argument("--out", default="out/demo", metavar="DIR")
    _add_model_args(demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "faithfulness":
            return _faithfulness(args)
        if args.command in ("synth", "train", "features", "probe", "finegrained"):
            from . import cli_train

            return getattr(cli_train, args.command)(args)
        return _explain(args, args.inputs)
    except KeyboardInterrupt:
        print("camloc: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, ImportError, TypeError, RuntimeError) as err:
        print(f"camloc: error: {err}", file=sys.stderr)
        return 2


def _load(args: argparse.Namespace):
    import torch

    from .maps import CAM
    from .runtime import keep_freed_memory
    from .zoo import load_model, model_info, with_info

    keep_freed_memory()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = None
    if args.classes:
        path = Path(args.classes)
        if not path.is_file():
            raise FileNotFoundError(f"{args.classes}: class names file not found")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    model = load_model(args.model, args.weights, device=device, class_names=names)
    info = model_info(model)
    overrides = {k: v for k, v in (("mean", args.mean), ("std", args.std), ("mode", args.resize)) if v is not None}
    if args.size is not None:
        overrides.update(size=args.size, resize_size=round(args.size * info.preprocess.resize_size / info.preprocess.size))
    if overrides:
        info = replace(info, preprocess=replace(info.preprocess, **overrides))
        with_info(model, info)
    if args.method == "cam":
        if args.target_layer:
            raise ValueError("--target-layer: CAM always uses the feature map its GAP head pools; pick another --method")
        return CAM(model), info
    from .methods import METHODS

    return METHODS[args.method](model, args.target_layer), info


def _explain(args: argparse.Namespace, inputs: list[str]) -> int:
    from .explain import collect_images, explain

    cam, info = _load(args)
    paths = collect_images(inputs)
    if not paths:
        print("camloc: error: no image files found in " + ", ".join(inputs), file=sys.stderr)
        return 2
    json_path = Path(args.json) if args.json else Path(args.out) / "results.json"
    result = explain(
        paths,
        cam,
        info,
        topk=args.topk,
        out_dir=args.out,
        json_path=json_path,
        batch_size=args.batch_size,
        threshold=args.threshold,
        alpha=args.alpha,
    )
    print(f"camloc: explained {len(result.records)} image(s) with {info.name}: grids in {args.out}/, results in {json_path}")
    if result.errors:
        print(f"camloc: {len(result.errors)} file(s) could not be read:", file=sys.stderr)
        for err in result.errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .reports import plot_curves, write_json

    dataset = _open_data(args)
    if args.step <= 0:
        raise ValueError(f"--step must be above 0, got {args.step}")
    cam, info = _load(args)
    config = {"model": info.name, "method": args.method, "data": str(Path(args.data).resolve()), "format": dataset.format}
    if args.baseline:
        config["baseline"] = args.baseline
    result = evaluate(
        dataset,
        cam,
        info.preprocess,
        protocol=args.protocol,
        batch_size=args.batch_size,
        workers=args.workers,
        step=args.step,
        threshold=args.threshold,
        per_image=args.per_image,
        resume=args.resume,
        config=config,
        baseline=args.baseline,
    )
    json_path = write_json({**config, "protocol": args.protocol, **result.to_json()}, args.json)
    if result.curves:
        plot_curves(result.cam_thresholds, result.curves, json_path.with_suffix(".png"))
    what = f"{args.baseline} baseline" if args.baseline else args.method
    print(format_summary(result.summary, f"{info.name}, {what}, on {dataset.name} ({args.protocol} protocol)", baseline=bool(args.baseline)))
    print(f"camloc: results in {json_path}" + (f", per-image rows in {args.per_image}" if args.per_image else ""))
    return _report_skipped(result.skipped)


def _method_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in METHOD_NAMES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected comma-separated methods of {','.join(METHOD_NAMES)}, got {text!r}")
    return list(dict.fromkeys(names))


def _faithfulness(args: argparse.Namespace) -> int:
    from .faithfulness import evaluate_faithfulness
    from .maps import CAM
    from .methods import METHODS
    from .reports import write_json

    dataset = _open_data(args)
    args.method = args.methods[0]
    first, info = _load(args)  # the model is loaded once; the other methods share it
    model = first.model
    methods = {}
    for name in args.methods:
        if name == "cam" and args.target_layer:
            raise ValueError("--target-layer: CAM always uses the feature map its GAP head pools; leave cam out of --methods")
        methods[name] = first if name == args.method else CAM(model) if name == "cam" else METHODS[name](model, args.target_layer)
    samples = dataset.samples[: args.limit] if args.limit else dataset.samples
    result = evaluate_faithfulness(
        samples,
        model,
        methods,
        info.preprocess,
        target=args.target,
        steps=args.steps,
        baseline=(args.deletion_baseline, args.insertion_baseline),
        batch_size=args.batch_size,
        chunk=args.chunk,
        workers=args.workers,
    )
    result.config = {"model": info.name, "data": str(Path(args.data).resolve()), "format": dataset.format, **result.config}
    title = (
        f"Faithfulness of {info.name}'s maps on {dataset.name}: {result.config['images']} image(s), "
        f"{args.target} class, {args.steps} steps, deletion to {args.deletion_baseline}, insertion from {args.insertion_baseline}"
    )
    table = result.to_markdown(title)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    json_path = write_json(result.to_json(), Path(args.json) if args.json else out.with_suffix(".json"))
    print(table, end="")
    print(f"camloc: table in {out}, results in {json_path}")
    return _report_skipped(result.skipped)


def _report_skipped(skipped: list[dict]) -> int:
    """List the images that could not be read; exit status 1 if there were any."""
    if not skipped:
        return 0
    print(f"camloc: {len(skipped)} image(s) could not be read and are not counted:", file=sys.stderr)
    for item in skipped:
        print(f"  {item['path']}: {item['error']}", file=sys.stderr)
    return 1


def format_summary(summary: dict, title: str, *, baseline: bool = False) -> str:
    """``baseline``: the summary of ``--baseline center``, whose best threshold t is the centred box
    of (1 - t) times the image's sides, shown as that fraction."""
    names = {
        "cls_top1": "classification top-1",
        "cls_top5": "classification top-5",
        "top1_loc": "top-1 localization",
        "top5_loc": "top-5 localization",
        "gt_known_loc": "GT-known localization",
        "max_box_acc": "MaxBoxAcc (IoU 0.5)",
        "max_box_acc_v2": "MaxBoxAccV2 (IoU .3/.5/.7)",
        "best_threshold": "best CAM threshold",
        "pxap": "PxAP",
    }
    if baseline and summary.get("best_threshold") is not None:
        names["best_threshold"] = "best box side (of the image)"
        summary = {**summary, "best_threshold": 1.0 - summary["best_threshold"]}
    lines = [title, f"  {'images':<28}{summary['images']:>8}"]
    for key, name in names.items():
        value = summary.get(key)
        if value is not None:
            lines.append(f"  {name:<28}{value:>8.2f}")
    per_iou = summary.get("max_box_acc_v2_per_iou")
    if per_iou:
        lines.append(f"  {'  at IoU 30 / 50 / 70':<28}" + " / ".join(f"{per_iou[k]:.2f}" for k in ("30", "50", "70")))
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    from skimage import data

    from .reports import save_image

    inputs = Path(args.out) / "inputs"
    paths = [save_image(getattr(data, name)(), inputs / f"{name}.png") for name in ("chelsea", "coffee")]
    args.topk, args.json, args.batch_size, args.threshold, args.alpha = 5, None, 16, 0.2, 0.5
    status = _explain(args, [str(p) for p in paths])
    print(f"camloc demo: open {Path(args.out) / 'chelsea.png'} and {Path(args.out) / 'coffee.png'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
