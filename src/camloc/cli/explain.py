"""``camloc explain``: top-k maps, boxes, grids and a JSON for images and folders of images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_model_args, fraction, load_method, positive

__all__ = ["register", "run", "explain_paths"]


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--topk", type=positive, default=5, help="classes per image (default: %(default)s)")
    p.add_argument("--out", default="out/explain", metavar="DIR", help="where the PNG grids go (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="results file (default: DIR/results.json)")
    p.add_argument(
        "--batch-size", type=positive, default=16, metavar="N", help="images per forward pass (default: %(default)s)"
    )
    p.add_argument(
        "--threshold",
        type=fraction,
        default=0.2,
        help="paper box threshold, fraction of the map's max (default: %(default)s)",
    )
    p.add_argument("--alpha", type=fraction, default=0.5, help="heat-map opacity (default: %(default)s)")
    add_model_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Explain the images of ``args.inputs``."""
    return explain_paths(args, args.inputs)


def explain_paths(args: argparse.Namespace, inputs: list[str]) -> int:
    """Explain ``inputs`` with the settings of ``args``; the exit status."""
    from ..evaluation.explain import collect_images, explain

    method, info = load_method(args)
    paths = collect_images(inputs)
    if not paths:
        print("camloc: error: no image files found in " + ", ".join(inputs), file=sys.stderr)
        return 2
    json_path = Path(args.json) if args.json else Path(args.out) / "results.json"
    result = explain(
        paths,
        method,
        info,
        topk=args.topk,
        out_dir=args.out,
        json_path=json_path,
        batch_size=args.batch_size,
        threshold=args.threshold,
        alpha=args.alpha,
    )
    print(
        f"camloc: explained {len(result.records)} image(s) with {info.name}: grids in {args.out}/, results in {json_path}"
    )
    if result.errors:
        print(f"camloc: {len(result.errors)} file(s) could not be read:", file=sys.stderr)
        for err in result.errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    return 0
