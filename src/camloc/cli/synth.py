"""``camloc synth``: write a procedurally generated WSOL dataset with exact boxes."""

from __future__ import annotations

import argparse

from ..datasets.synthetic import KINDS, LAYOUTS
from .common import positive

__all__ = ["register", "run"]


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("out", metavar="OUT", help="a new (or empty) folder")
    p.add_argument(
        "--kind",
        choices=KINDS,
        default="shapes",
        help="shapes: classes are distinct shapes; finegrained: one body, classes differ in a small part "
        "(default: %(default)s)",
    )
    p.add_argument("--train", type=positive, help="training images (default: the generator's)")
    p.add_argument("--test", type=positive, help="test images (default: the generator's)")
    p.add_argument("--size", type=positive, help="image side in pixels (default: the generator's)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: %(default)s)")
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="csv",
        help="csv: OUT/train + OUT/test; cub: one CUB-200-2011 folder (default: %(default)s)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Generate the dataset."""
    from ..datasets.synthetic import generate

    options = {k: v for k, v in (("train", args.train), ("test", args.test), ("size", args.size)) if v is not None}
    train_set, test_set = generate(args.out, args.kind, seed=args.seed, layout=args.layout, **options)
    classes = len(train_set.class_names or [])
    print(
        f"camloc: wrote {len(train_set)} training and {len(test_set)} test images of {classes} classes "
        f"({args.kind}) to {args.out}"
    )
    return 0
