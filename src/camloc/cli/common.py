"""What the commands share: argument types and groups, loading the model and method, reporting skipped files.

Library errors name parameters as Python spells them (``weights=``, ``resume=True``); :func:`user_message`
translates them to the flags of the command's own parser (:func:`parameter_flags`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..datasets.registry import FORMATS
from ..errors import CamlocError, InvalidArgument, OutputExists
from ..maps.registry import METHOD_NAMES

if TYPE_CHECKING:
    from ..datasets.base import Dataset
    from ..maps.core import MapMethod
    from ..models.info import ModelInfo

DEFAULT_MODEL = "mobilenet_v2"

# The attribute of an argparse action naming the library parameter it sets, where that is not its dest.
_PARAMETER = "camloc_parameter"
# A parameter as the library's messages name it: ``weights=``, ``resume=True``.
_MENTION = re.compile(r"\b([a-z][a-z0-9_]*)=(True\b)?")


def sets_parameter(action: argparse.Action, parameter: str) -> argparse.Action:
    """Mark ``action`` as the flag that sets the library parameter ``parameter`` (where it is not the dest).

    ``--class-map`` (dest ``class_map``) sets ``open_dataset``'s ``classes=``: errors that name
    ``classes=`` then show ``--class-map``. Returns ``action``.
    """
    setattr(action, _PARAMETER, parameter)
    return action


def parameter_flags(parser: argparse.ArgumentParser | None = None) -> dict[str, str]:
    """Library parameter -> the flag of ``parser`` that sets it (None: of every command).

    Each option's dest, or the parameter it is marked to set (:func:`sets_parameter`), maps to its long
    option string, so a flag spelled unlike its dest (``boxes --data-format``, dest ``format``) is found.
    """
    if parser is None:
        from . import build_parser

        flags: dict[str, str] = {}
        for command in build_parser().commands.values():
            flags = {**parameter_flags(command), **flags}  # the first command that has a flag names it
        return flags
    flags = {}
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public list of a parser's actions
        if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        flags.setdefault(getattr(action, _PARAMETER, action.dest), flag)
    return flags


def flag_of(parameter: str, parser: argparse.ArgumentParser | None = None) -> str:
    """The flag of a library parameter (``target_layer`` -> ``--target-layer``) in ``parser`` (None: any command)."""
    return parameter_flags(parser).get(parameter, "--" + parameter.replace("_", "-"))


def user_message(err: BaseException, parser: argparse.ArgumentParser | None = None) -> str:
    """The one-line message of a camloc error or OSError, with parameters named by the flags of ``parser``.

    The parameters rewritten are the ones the error lists (:attr:`camloc.errors.CamlocError.arguments`),
    or, where the raise site does not say, every ``name=`` whose name a flag of ``parser`` sets. A
    parameter no flag sets keeps its Python spelling. ``parser``: the command's parser (None: every command's).
    """
    if isinstance(err, OSError) and not isinstance(err, CamlocError) and err.filename:
        return os_message(err)
    flags = parameter_flags(parser)
    named = getattr(err, "arguments", None)
    if named is not None:
        flags = {k: v for k, v in flags.items() if k in named}

    def flag(m: re.Match) -> str:
        if m.group(1) not in flags:
            return m.group(0)
        follows = m.string[m.end() : m.end() + 1]
        spaced = not m.group(2) and follows not in ("", " ", ":", ",", ";", ")")
        return flags[m.group(1)] + (" " if spaced else "")

    text = _MENTION.sub(flag, str(err))
    return " ".join(text.split("\n"))


def os_message(err: OSError) -> str:
    """``FILE: cause`` of an operating-system error, naming the file in the way (a file where a folder must be)."""
    name = Path(os.fsdecode(err.filename))
    if err.errno == errno.ENOTDIR or (err.errno == errno.EEXIST and not err.filename2):  # mkdir, open under a file
        in_the_way = next((p for p in (name, *name.parents) if p.is_file()), None)
        if in_the_way is not None:
            return f"{in_the_way}: is a file, not a folder"
    cause = (err.strerror or str(err)).lower()
    if err.filename2 and err.errno in _WRITING:  # a copy that could not be written: the copy is the file at fault
        return f"{os.fsdecode(err.filename2)}: {cause} (a copy of {name})"
    return f"{name}: {cause}" + (f" ({os.fsdecode(err.filename2)})" if err.filename2 else "")


#: The errors of a write (a full disk, a quota, a read-only or failing disk, a file over its size limit).
_WRITING = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG}


class _StderrHandler(logging.Handler):
    """Library log records as ``camloc: message`` lines on the current stderr (so tests can capture them)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"camloc: {self.format(record)}", file=sys.stderr)


def show_library_log(level: int = logging.INFO) -> None:
    """Print camloc's log records on stderr (once per process)."""
    logger = logging.getLogger("camloc")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.propagate = False
    logger.setLevel(level)


# --------------------------------------------------------------------------------------------
# argument types


def triple(text: str) -> tuple[float, float, float]:
    """``R,G,B`` -> three floats."""
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers R,G,B, got {text!r}")
    return values


def positive(text: str) -> int:
    """A whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


# --------------------------------------------------------------------------------------------
# argument groups


def add_model_args(
    p: argparse.ArgumentParser,
    *,
    methods: bool = True,
    resize_default: str | None = None,
    size_help: str = "input side in pixels (default: the model's, else 224)",
) -> None:
    """``--model``, ``--weights``, preprocessing overrides, ``--device`` and (with ``methods``) ``--method``.

    ``resize_default``: the ``--resize`` mode when none is given (None: the model's own, ``crop``).
    ``size_help``: ``--size``'s help, for a command whose default input size is its own.
    """
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="torchvision name, timm:<name>, hf:FOLDER (transformers save_pretrained), file.py:factory, "
        "package.module:factory or a camloc MODEL.pt "
        "(default: %(default)s)",
    )
    g.add_argument("--weights", metavar="PATH", help="weight file to load instead of the cached pretrained one")
    sets_parameter(
        g.add_argument(
            "--classes", metavar="FILE", help="class names, one per line (default: the model's own, or indices)"
        ),
        "class_names",
    )
    g.add_argument(
        "--mean", type=triple, metavar="R,G,B", help="normalization mean (default: the model's, else ImageNet)"
    )
    g.add_argument(
        "--std", type=triple, metavar="R,G,B", help="normalization std (default: the model's, else ImageNet)"
    )
    g.add_argument("--size", type=positive, metavar="S", help=size_help)
    g.add_argument(
        "--resize",
        choices=["full", "crop", "squash"],
        default=resize_default,
        help="full: the whole photo, shorter side to the model's resize size (256), any aspect; crop: shorter side "
        "then the centre square (torchvision's eval); squash: resize to SxS (the WSOL protocol). "
        f"Default: {resize_default or 'crop'}",
    )
    g.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    if methods:
        g.add_argument("--method", default="cam", choices=METHOD_NAMES, help="map method (default: %(default)s)")
        g.add_argument(
            "--target-layer",
            metavar="NAME",
            help="module whose output the method explains (default: the last feature map)",
        )
        g.add_argument(
            "--amp",
            choices=["bf16", "fp16"],
            help="mixed precision: the forward pass in bfloat16 / float16 (autocast), the maps in float32 "
            "(for GPUs; default: float32 throughout)",
        )


def add_map_size_arg(p: argparse.ArgumentParser) -> None:
    """``--map-size``: the input side the maps are read at, apart from the one that classifies."""
    p.add_argument(
        "--map-size",
        type=positive,
        metavar="S",
        help="read the maps at input side S while classifying at --size: two forward passes a batch "
        "(default: the map size the model file records, e.g. camloc train's; with --size, that size)",
    )


def map_size_of(args: argparse.Namespace, info: ModelInfo) -> int | None:
    """The map size the flags ask for: ``--map-size``, else ``--size`` (which then sets both), else the model's own."""
    return getattr(args, "map_size", None) or args.size or info.map_size


def add_dataset_args(p: argparse.ArgumentParser, *, split: bool = True, format_flag: str = "--format") -> None:
    """``--format`` (or ``format_flag``), ``--images``, ``--split``, ``--class-map``, ``--one-based``."""
    g = p.add_argument_group("dataset")
    g.add_argument(
        format_flag,
        dest="format",
        choices=["auto", *FORMATS],
        default="auto",
        help="dataset layout (default: %(default)s, detected from the files): "
        + "; ".join(f"{k}: {v}" for k, v in FORMATS.items()),
    )
    g.add_argument("--images", metavar="DIR", help="image root for wsol metadata / XML annotations")
    if split:
        g.add_argument(
            "--split", default="test", choices=["train", "test", "all"], help="CUB split (default: %(default)s)"
        )
    sets_parameter(
        g.add_argument("--class-map", metavar="FILE", help="class names or synsets, one per line, in index order"),
        "classes",
    )
    g.add_argument("--one-based", action="store_true", help="XML boxes are 1-based (Pascal VOC)")


def open_data(args: argparse.Namespace, data: str | None = None) -> Dataset:
    """The dataset that DATA (or ``data``, read with the same dataset flags) and the dataset flags name."""
    from ..datasets.registry import open_dataset

    return open_dataset(
        data or args.data,
        args.format,
        images=args.images,
        split=args.split,
        classes=args.class_map,
        one_based=args.one_based,
    )


# --------------------------------------------------------------------------------------------
# model and method


def resolve_device(name: str | None) -> str:
    """``--device`` checked: a device torch knows, and a CUDA device only where one is available.

    Under torchrun, ``cuda`` (or no ``--device`` on a machine with CUDA) is this process's GPU, ``cuda:LOCAL_RANK``.
    """
    import torch

    from ..distributed import world
    from ..utils import default_device

    here = world()
    if name is None:
        name = default_device()
    if name == "cuda" and here.distributed:
        name = f"cuda:{here.local_rank}"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InvalidArgument(
            "device", f"device={name!r}: not a device torch knows (cpu, cuda, cuda:1, ...)", arguments=["device"]
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(
            "device", f"device={name!r}: no CUDA device is available here; use cpu", arguments=["device"]
        )
    return name


def load_model_and_info(args: argparse.Namespace):
    """The model that ``--model`` / ``--weights`` name, on ``--device``, with the preprocessing overrides applied."""
    from ..distributed import join
    from ..models.info import model_info, with_info
    from ..models.loading import load_model
    from ..runtime import keep_freed_memory

    keep_freed_memory()
    device = resolve_device(args.device)
    join(device)  # the process group of a torchrun launch (nothing to join otherwise)
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
        overrides.update(
            size=args.size, resize_size=round(args.size * info.preprocess.resize_size / info.preprocess.size)
        )
    if overrides:
        info = replace(info, preprocess=replace(info.preprocess, **overrides))
        with_info(model, info)
    return model, info


def load_method(args: argparse.Namespace, name: str | None = None, **options: Any) -> tuple[MapMethod, ModelInfo]:
    """The map method ``--method`` (or ``name``) of the model the model flags name, and the model's info.

    ``options``: more keyword arguments of the method's constructor (``channels_last=``, ``fuse_batchnorm=``, ...).
    """
    from ..maps.registry import create_method

    model, info = load_model_and_info(args)
    if getattr(args, "amp", None):
        options = {"amp": args.amp, **options}
    return create_method(name or args.method, model, args.target_layer, **options), info


#: The flags that load a model (``add_model_args``) and open a dataset (``add_dataset_args``), as results record them.
MODEL_FLAGS = ("model", "weights", "classes", "mean", "std", "size", "resize", "method", "target_layer")
DATASET_FLAGS = ("data", "format", "images", "split", "class_map", "one_based")


def recorded_arguments(args: argparse.Namespace) -> dict:
    """The model and dataset flags of a run, paths made absolute, so that a later command can load the same again."""

    def absolute(value: str | None) -> str | None:
        return str(Path(value).resolve()) if value else value

    out = {k: getattr(args, k, None) for k in MODEL_FLAGS + DATASET_FLAGS}
    for key in ("weights", "classes", "images", "class_map", "data"):
        out[key] = absolute(out[key])
    model = out["model"] or ""
    file, colon, factory = model.rpartition(":")
    if colon and file.endswith(".py"):
        out["model"] = f"{absolute(file)}:{factory}"
    elif Path(model).exists():
        out["model"] = absolute(model)
    return out


# --------------------------------------------------------------------------------------------
# outputs: never replace or strand an earlier run's results


#: The lock files this process holds (:func:`lock_output`), released by :func:`release_locks`.
_HELD: list[Path] = []


def lock_output(path: str | os.PathLike) -> None:
    """Hold ``PATH.lock`` while this command writes ``path``: one run per output.

    The lock file holds the PID and host of the run; a second run on the same output is refused at once
    (:class:`~camloc.errors.OutputExists`, naming the lock and the other process). A lock left by a
    process that is gone (killed) is taken over. Under torchrun only rank 0 takes it. Released by
    :func:`release_locks` (the CLI's ``main`` does, however the command ends).
    """
    from ..distributed import world

    if not world().is_main:
        return
    lock = Path(f"{path}.lock")
    _check_writable(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    mine = f"{os.getpid()} {socket.gethostname()}\n"
    for _ in range(2):  # a stale lock is removed once, then taken
        try:
            with open(lock, "x") as f:
                f.write(mine)
            _HELD.append(lock)
            return
        except FileExistsError:
            pid, host = _holder(lock)
            if pid is not None and host == socket.gethostname() and not _alive(pid):
                lock.unlink(missing_ok=True)
                continue
            who = f"PID {pid}" + ("" if host == socket.gethostname() else f" on {host}") if pid else "another process"
            raise OutputExists(
                f"{lock}: another camloc run ({who}) is writing here; wait for it to end, or choose another place"
            ) from None
    raise OutputExists(f"{lock}: could not be taken; remove it if no camloc run is writing here")


def _holder(lock: Path) -> tuple[int | None, str]:
    """The PID and host a lock file names ((None, "") when it cannot be read: being written, or not ours)."""
    try:
        pid, host = lock.read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None, ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def release_locks() -> None:
    """Remove the lock files this process holds."""
    while _HELD:
        _HELD.pop().unlink(missing_ok=True)


def add_overwrite_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--overwrite``: replace an earlier run's results at the same place (by default a command refuses)."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier run at the same place (default: refuse, naming the file)",
    )


def check_outputs(
    args: argparse.Namespace, *paths: str | os.PathLike | None, flag: str = "--out", resumable: bool = False
) -> None:
    """Refuse, before any work, to write where an earlier run's results are or where nothing can be written.

    A path that exists is refused (:class:`~camloc.errors.OutputExists`, naming it) unless the command
    was given ``--overwrite``, or ``--resume`` (which continues, and so rewrites, that run's results).
    A path under a file or in a folder this process cannot write is refused too (``FILE: cause``).
    ``flag``: the option that chooses the place, named in the message; ``resumable``: the message also
    offers ``--resume`` (the paths record a run that can be continued). None paths are left out.
    """
    for path in (Path(p) for p in paths if p is not None):
        _check_writable(path)
        again = getattr(args, "overwrite", False) or getattr(args, "resume", False)
        if path.exists() and not again:
            what = "exists; pass --resume to continue that run," if resumable else "exists (an earlier run's); pass"
            raise OutputExists(f"{path}: {what} --overwrite to replace it, or choose another {flag}")


@contextlib.contextmanager
def nothing_left_unless_done(
    args: argparse.Namespace, journal: str | os.PathLike | None, *outputs: str | os.PathLike
) -> Iterator[None]:
    """A fresh run that stops (an error, Ctrl-C) before its journal records anything removes what it made.

    Otherwise the empty journal and folders would stand in the way of the next run (``exists; pass
    --resume``) while holding nothing to resume. ``journal``: the run's journal (its first line is
    its settings or column names; a CSV journal's sidecar ``FILE.json`` goes with it); ``outputs``:
    the other files and folders the run makes. A resumed run, or one that recorded something, keeps all.
    """
    try:
        yield
    except BaseException:
        if journal is not None and not getattr(args, "resume", False) and _records(Path(journal)) == 0:
            for path in (Path(journal), Path(f"{journal}.json"), *map(Path, outputs)):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        raise


def _records(journal: Path) -> int:
    """The records of a journal: its complete lines after the first (0 for a missing file)."""
    try:
        with open(journal, "rb") as f:
            return max(0, f.read().count(b"\n") - 1)
    except OSError:
        return 0


def _check_writable(path: Path) -> None:
    """Refuse a path under a file, or in a folder this process cannot write (``FILE: cause``)."""
    in_the_way = next((p for p in path.parents if p.exists()), None)
    if in_the_way is not None and not in_the_way.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(path))
    if in_the_way is not None and not os.access(in_the_way, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "permission denied: cannot write in this folder", str(in_the_way))


def report_skipped(skipped: list[dict]) -> int:
    """List the images that could not be read on stderr; exit status 1 if there were any."""
    if not skipped:
        return 0
    print(f"camloc: {len(skipped)} image(s) could not be read and are not counted:", file=sys.stderr)
    for item in skipped:
        print(f"  {item['path']}: {item['error']}", file=sys.stderr)
    return 1


__all__ = [
    "DATASET_FLAGS",
    "MODEL_FLAGS",
    "add_dataset_args",
    "add_overwrite_arg",
    "check_outputs",
    "nothing_left_unless_done",
    "lock_output",
    "release_locks",
    "add_model_args",
    "flag_of",
    "fraction",
    "load_method",
    "load_model_and_info",
    "open_data",
    "parameter_flags",
    "positive",
    "recorded_arguments",
    "report_skipped",
    "resolve_device",
    "sets_parameter",
    "show_library_log",
    "triple",
    "user_message",
]
