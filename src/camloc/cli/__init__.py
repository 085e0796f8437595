"""The ``camloc`` command line: a thin layer over the library, one module per command.

Each command module has ``register(parser)`` (its arguments) and ``run(args) -> exit status``.
Only the command being run is registered, so ``camloc --help`` and ``camloc --version`` import
neither torch nor the library's heavier stages. Exit status: 0 done, 1 done but some input files
could not be read (they are listed), 2 a usage or input error (one line on stderr), 130 interrupted
(Ctrl-C, SIGINT), 143 terminated (SIGTERM). An interrupted or terminated run leaves its journal
whole and synced, and says how to continue it.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from ..errors import CamlocError
from ..utils import camloc_version
from .common import release_locks, show_library_log, user_message

__all__ = ["COMMANDS", "build_parser", "main"]

#: command -> (module, one-line help), in the order ``camloc --help`` lists them.
COMMANDS = {
    "explain": (".explain", "top-k class activation maps, boxes, grids and JSON for images"),
    "evaluate": (".evaluate", "weakly-supervised localization metrics on a dataset with boxes (or masks)"),
    "boxes": (".boxes", "weak labels: CAM boxes of a folder or dataset as COCO, Pascal VOC or YOLO annotations"),
    "faithfulness": (
        ".faithfulness",
        "deletion/insertion AUC, average drop and increase in confidence of map methods on a dataset",
    ),
    "metrics": (
        ".metrics",
        "pointing game, energy pointing game, relevance mass / rank and ROAD of map methods on a dataset with boxes",
    ),
    "sanity": (".sanity", "sanity checks of map methods: maps of models with randomised layers or random labels"),
    "synth": (".synth", "write a procedurally generated WSOL dataset (train/ and test/ in the csv layout)"),
    "train": (".train", "train a GAP classifier on image labels (camloc's small net, or fine-tune a backbone)"),
    "features": (".features", "GAP feature vectors of a dataset's images, to a .npz file"),
    "probe": (
        ".probe",
        "fit a linear classifier on GAP features; the result is a model file whose CAMs are the new classes'",
    ),
    "finegrained": (
        ".finegrained",
        "the paper's fine-grained experiment: probe on full images, on CAM-box crops and on ground-truth crops",
    ),
    "demo": (".demo", "explain scikit-image's sample photos (chelsea, coffee) with the default model"),
    "report": (".report", "one self-contained HTML file of an evaluation: summary, curves, per class, galleries"),
    "serve": (".serve", "a local web page: explain an image, any class and method, boxes redrawn live"),
}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that a run unwinds (journal closed) as it does on Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


class Parser(argparse.ArgumentParser):
    """The top-level parser, which keeps its commands' parsers in ``commands``."""

    commands: dict[str, argparse.ArgumentParser]


def build_parser(only: str | None = None) -> Parser:
    """The argument parser; with ``only``, the other commands are listed but their arguments not built."""
    parser = Parser(prog="camloc", description="Class activation maps and weakly-supervised localization for GAP CNNs.")
    parser.commands = {}
    parser.add_argument("--version", action="version", version=f"camloc {camloc_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, text) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        parser.commands[name] = p
        if only is None or only == name:
            importlib.import_module(module, __name__).register(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    parser = build_parser(only=command if command in COMMANDS else "")
    args, extra = parser.parse_known_args(argv)
    if extra:  # the command's own usage, not the top level's
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    show_library_log()
    main_thread = threading.current_thread() is threading.main_thread()
    earlier = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return int(args.run(args))
    except (KeyboardInterrupt, Terminated) as stop:
        resumable = getattr(args, "resume", None) is not None  # the command has --resume
        how = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
        print(f"camloc: {how}" + ("; run the same command with --resume to continue" if resumable else ""),
              file=sys.stderr)  # fmt: skip
        return 143 if isinstance(stop, Terminated) else 130
    except (CamlocError, OSError) as err:
        print(f"camloc: error: {user_message(err, parser.commands[args.command])}", file=sys.stderr)
        return 2
    finally:
        release_locks()
        if earlier is not None:
            signal.signal(signal.SIGTERM, earlier)
        if "torch.distributed" in sys.modules:  # a torchrun launch: leave its process group cleanly
            from ..distributed import leave

            leave()
