"""``camloc faithfulness``: deletion / insertion AUC, average drop and increase of several map methods."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..maps.registry import METHOD_NAMES
from ..metrics.faithfulness import BASELINES
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

__all__ = ["add_methods_group", "method_list", "register", "run"]


def method_list(text: str) -> list[str]:
    """``--methods``' value: comma-separated registered method names, without repeats."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in METHOD_NAMES]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected comma-separated methods of {','.join(METHOD_NAMES)}, got {text!r}")
    return list(dict.fromkeys(names))


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument(
        "data", metavar="DATA", help="dataset folder (any format evaluate reads; only the images and labels are used)"
    )
    add_dataset_args(p)
    p.add_argument("--limit", type=positive, metavar="N", help="only the first N images")
    p.add_argument(
        "--target",
        choices=["predicted", "label"],
        default="predicted",
        help="class to explain and score: the model's top-1 (as RISE and Grad-CAM++) or the dataset label "
        "(default: %(default)s)",
    )
    p.add_argument("--steps", type=positive, default=50, help="deletion/insertion steps (default: %(default)s)")
    p.add_argument(
        "--deletion-baseline",
        choices=BASELINES,
        default="zero",
        help="what deleted pixels become (default: %(default)s, as RISE)",
    )
    p.add_argument(
        "--insertion-baseline",
        choices=BASELINES,
        default="blur",
        help="what insertion starts from (default: %(default)s, as RISE)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default="out/faithfulness",
        help="the run's folder: results.md (the markdown table) and results.json; a path ending in .md names the "
        "table itself, its JSON beside it (default: %(default)s)",
    )
    p.add_argument("--json", metavar="FILE", help="the results file instead (default: DIR/results.json)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run journalled beside the JSON (STEM.journal.jsonl)"
    )
    add_overwrite_arg(p)
    p.add_argument(
        "--batch-size", type=positive, default=16, metavar="N", help="images per batch (default: %(default)s)"
    )
    p.add_argument(
        "--chunk",
        type=positive,
        default=64,
        metavar="N",
        help="perturbed images per forward pass (default: %(default)s)",
    )
    p.add_argument(
        "--workers", type=positive, default=2, metavar="N", help="threads for decoding (default: %(default)s)"
    )
    add_model_args(p, methods=False)
    add_methods_group(p, list(METHOD_NAMES))
    p.set_defaults(run=run)


def add_methods_group(
    p: argparse.ArgumentParser,
    default: list[str],
    target_help: str = "module whose output the methods explain (default: the last feature map)",
) -> None:
    """The ``methods`` group of the commands that score several methods: ``--methods`` and ``--target-layer``."""
    g = p.add_argument_group("methods")
    named = "all" if default == list(METHOD_NAMES) else ",".join(default)
    g.add_argument(
        "--methods",
        "--method",
        type=method_list,
        default=default,
        metavar="M1,M2,...",
        help=f"comma-separated methods of {','.join(METHOD_NAMES)} (default: {named})",
    )
    g.add_argument("--target-layer", metavar="NAME", help=target_help)


def run(args: argparse.Namespace) -> int:
    """Score every method, print and write the table and the JSON."""
    from ..distributed import barrier, rank_file, world
    from ..evaluation.faithfulness import evaluate_faithfulness
    from ..maps.registry import create_method
    from ..reports.summary import format_table
    from ..utils import atomic_path, versions, write_json

    out = Path(args.out) if args.out.endswith(".md") else Path(args.out) / "results.md"  # FILE.md: camloc 0.2's
    json_path = Path(args.json) if args.json else out.with_suffix(".json")
    journal = json_path.with_name(f"{json_path.stem}.journal.jsonl")
    lock_output(json_path)
    check_outputs(args, out, json_path)
    check_outputs(args, journal, resumable=True)
    if args.overwrite and not args.resume:
        rank_file(journal).unlink(missing_ok=True)
    dataset = open_data(args)
    model, info = load_model_and_info(args)  # loaded once; every method shares it
    methods = {name: create_method(name, model, args.target_layer) for name in args.methods}
    samples = dataset.samples[: args.limit] if args.limit else dataset.samples
    per_image = 2 * (args.steps + 1) + 2
    if world().is_main:  # one line for a torchrun launch, from rank 0
        scorecam = (
            ", and Score-CAM one more per channel of its layer (1,280 for MobileNetV2): about 35 s per image on 2 "
            "CPU cores"
        )
        cost = f"each costs {per_image} forward passes per image" + (scorecam if "scorecam" in methods else "")
        print(f"camloc: {len(samples)} image(s) x {len(methods)} method(s); {cost}", file=sys.stderr)
    data = str(Path(args.data).resolve())
    with nothing_left_unless_done(args, rank_file(journal)):
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
            journal=journal,
            resume=args.resume,
            config={"model": info.name, "data": data, "format": dataset.format},
        )
    if not world().is_main:  # rank 0 of a torchrun launch writes and prints for the run
        barrier()
        rank_file(journal).unlink(missing_ok=True)
        return 0
    result.config = {
        "model": info.name,
        "data": data,
        "format": dataset.format,
        **result.config,
        "versions": versions(),
    }
    title = (
        f"Faithfulness of {info.name}'s maps on {dataset.name}: {result.config['images']} image(s), "
        f"{args.target} class, {args.steps} steps, deletion to {args.deletion_baseline}, "
        f"insertion from {args.insertion_baseline}"
    )
    table = format_table(result.summary, title)
    with atomic_path(out) as tmp:
        tmp.write_text(table)
    write_json(result.to_json(), json_path)
    barrier()
    rank_file(journal).unlink(missing_ok=True)  # each process's own, once the results are whole
    print(table, end="")
    print(f"camloc: table in {out}, results in {json_path}")
    return report_skipped(result.skipped)
