"""``camloc evaluate``: WSOL metrics of a model's maps on a dataset with boxes (or masks), resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation.protocols import BASELINES, PROTOCOLS
from .common import (
    add_dataset_args,
    add_map_size_arg,
    add_model_args,
    add_overwrite_arg,
    check_outputs,
    fraction,
    load_method,
    lock_output,
    map_size_of,
    nothing_left_unless_done,
    open_data,
    positive,
    recorded_arguments,
    report_skipped,
)

__all__ = ["register", "run"]


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument(
        "data",
        metavar="DATA",
        help="dataset folder (boxes.csv layout, wsol metadata, CUB-200-2011, or XML annotations)",
    )
    add_dataset_args(p)
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="wsol",
        help="box protocol (default: %(default)s); see docs/protocols.md",
    )
    p.add_argument(
        "--threshold",
        type=fraction,
        default=0.2,
        help="single-box rule: keep pixels >= this fraction of the min-max score map (wsol protocol, as "
        "wsolevaluation) or of the map's max (paper protocol, as the paper's text) (default: %(default)s)",
    )
    p.add_argument(
        "--step", type=fraction, default=0.01, help="CAM threshold step of the wsol sweep (default: %(default)s)"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="the run's folder: results.json (summary + curves), results.png and rows.csv, one row per image "
        "as it is computed, which --resume continues (default: only out/evaluate/results.json and its plot)",
    )
    p.add_argument("--json", metavar="FILE", help="the summary + curves file instead (default: DIR/results.json)")
    p.add_argument(
        "--per-image",
        metavar="FILE.csv",
        help="the per-image rows instead (default: DIR/rows.csv with --out; docs/per-image.md describes them)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run whose per-image rows are there")
    add_overwrite_arg(p)
    p.add_argument(
        "--report", metavar="FILE.html", help="also write the run's HTML report (as camloc report does, galleries of 8)"
    )
    p.add_argument(
        "--batch-size", type=positive, default=32, metavar="N", help="images per forward pass (default: %(default)s)"
    )
    p.add_argument(
        "--workers", type=positive, default=2, metavar="N", help="threads for decoding and boxes (default: %(default)s)"
    )
    p.add_argument(
        "--baseline",
        choices=BASELINES,
        help="score fixed centred boxes instead of CAM boxes (MaxBoxAcc = the best fixed centred box)",
    )
    p.add_argument(
        "--calibrate",
        metavar="VAL",
        help="a labelled validation set (read with the same dataset flags): choose the CAM thresholds "
        "on it and report the test accuracy at them beside MaxBoxAcc, which picks them on DATA itself",
    )
    add_model_args(p)
    add_map_size_arg(p)
    p.set_defaults(run=run)


def _check_outputs(args: argparse.Namespace) -> None:
    """Where the results go (``args.json``, ``args.per_image``), refused if an earlier run's are there.

    ``--overwrite`` removes the earlier per-image rows (with their settings and torchrun ranks' files) first.
    """
    from ..distributed import barrier, rank_file
    from ..evaluation.run import sidecar

    args.json = args.json or str(Path(args.out or "out/evaluate") / "results.json")
    args.per_image = args.per_image or (str(Path(args.out) / "rows.csv") if args.out else None)
    flag = "--json" if args.out is None else "--out"
    rows = Path(args.per_image) if args.per_image else None
    lock_output(rows or args.json)
    check_outputs(args, rows, flag=flag, resumable=True)
    check_outputs(args, args.json, args.report, flag=flag)
    if rows is not None and args.overwrite and not args.resume:
        for stale in {rows, rank_file(rows)}:
            stale.unlink(missing_ok=True)
            sidecar(stale).unlink(missing_ok=True)
        barrier()


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the summary, write the JSON and the curves' plot."""
    from ..distributed import barrier, rank_file, world
    from ..evaluation.evaluate import calibrate, evaluate
    from ..evaluation.run import sidecar
    from ..reports.figures import plot_curves
    from ..reports.summary import format_summary
    from ..utils import versions, write_json
    from .report import print_report

    _check_outputs(args)
    dataset = open_data(args)
    method, info = load_method(args)
    config = {
        "model": info.name,
        "method": args.method,
        "data": str(Path(args.data).resolve()),
        "format": dataset.format,
    }
    if args.baseline:
        config["baseline"] = args.baseline
    map_size = map_size_of(args, info)
    if map_size is not None and map_size != info.preprocess.size:
        config["map_size"] = map_size
    here = world()
    # the report reads the per-image rows: without --per-image they go to a scratch file beside the JSON
    scratch = (
        Path(args.json).with_name(f".{Path(args.json).stem}.rows.csv") if args.report and not args.per_image else None
    )
    if scratch is not None:
        for stale in {scratch, rank_file(scratch, here)}:
            stale.unlink(missing_ok=True)
            sidecar(stale).unlink(missing_ok=True)
        barrier()
    per_image = str(scratch) if scratch else args.per_image
    with nothing_left_unless_done(args, per_image):
        result = evaluate(
            dataset,
            method,
            info=info,
            protocol=args.protocol,
            batch_size=args.batch_size,
            workers=args.workers,
            step=args.step,
            threshold=args.threshold,
            per_image=per_image,
            resume=args.resume,
            config=config,
            baseline=args.baseline,
            map_size=map_size,
        )
    if args.calibrate:
        val_set = open_data(args, args.calibrate)
        same = {k: getattr(args, k) for k in ("protocol", "batch_size", "workers", "step", "threshold", "baseline")}
        val = evaluate(val_set, method, info=info, map_size=map_size, **same)
        result.summary["calibrated"] = {"data": str(Path(args.calibrate).resolve()), **calibrate(result, val)}
    if not here.is_main:  # rank 0 writes, prints and gives the exit status for the run
        return 0
    # how to load the model, data and rows again (camloc report does)
    again = {
        "arguments": recorded_arguments(args),
        "per_image": str(Path(args.per_image).resolve()) if args.per_image else None,
    }
    json_path = write_json(
        {**config, "protocol": args.protocol, **result.to_json(), "versions": versions(), **again}, args.json
    )
    if result.curves:
        plot_curves(result.cam_thresholds, result.curves, json_path.with_suffix(".png"))
    what = f"{args.baseline} baseline" if args.baseline else args.method
    title = f"{info.name}, {what}, on {dataset.name} ({args.protocol} protocol)"
    print(format_summary(result.summary, title, baseline=bool(args.baseline)))
    print(f"camloc: results in {json_path}" + (f", per-image rows in {args.per_image}" if args.per_image else ""))
    if args.report:
        names = dataset.class_names or (list(info.class_names) if info.class_names else None)
        kept = None if scratch is None else "rows that were not kept (evaluate --per-image FILE.csv keeps them)"
        print_report(json_path, args.report, per_image, dataset, method, info.preprocess, names, 8, kept)
    if scratch is not None:
        scratch.unlink(missing_ok=True)
        sidecar(scratch).unlink(missing_ok=True)
    return report_skipped(result.skipped)
