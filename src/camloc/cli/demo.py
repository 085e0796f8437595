"""``camloc demo``: explain scikit-image's sample photos (chelsea, coffee) with the default model."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_model_args
from .explain import explain_paths

__all__ = ["register", "run"]


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument(
        "--out", default="out/demo", metavar="DIR", help="where the grids and results go (default: %(default)s)"
    )
    add_model_args(p, resize_default="full")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the two photos, then explain them."""
    from skimage import data

    from ..reports.figures import save_image

    inputs = Path(args.out) / "inputs"
    paths = [save_image(getattr(data, name)(), inputs / f"{name}.png") for name in ("chelsea", "coffee")]
    args.topk, args.json, args.batch_size, args.threshold, args.alpha = 5, None, 16, 0.2, 0.5
    args.classes_wanted, args.save_maps, args.overwrite = None, False, True  # the same two photos again
    status = explain_paths(args, [str(p) for p in paths])
    print(f"camloc demo: open {Path(args.out) / 'chelsea.png'} and {Path(args.out) / 'coffee.png'}")
    return status
