"""``camloc explain``: maps, boxes, grids and a JSON for images and folders of images."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InvalidArgument, did_you_mean
from ..utils import is_image_file
from .common import (
    add_map_size_arg,
    add_model_args,
    add_overwrite_arg,
    check_outputs,
    fraction,
    load_method,
    lock_output,
    map_size_of,
    nothing_left_unless_done,
    positive,
    release_locks,
)

__all__ = ["explain_paths", "register", "resolve_classes", "run"]


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and folders (searched recursively)")
    p.add_argument("--topk", type=positive, default=5, help="the best classes of each image (default: %(default)s)")
    p.add_argument(
        "--class",
        dest="classes_wanted",
        action="append",
        metavar="NAME|INDEX",
        help="explain this class in every image instead of the top-k (repeat for more; a name or an index)",
    )
    p.add_argument(
        "--out", default="out/explain", metavar="DIR", help="the PNG grids and results.json (default: %(default)s)"
    )
    p.add_argument("--json", metavar="FILE", help="results file (default: DIR/results.json)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run with the same inputs and settings (its journal is beside the JSON)",
    )
    add_overwrite_arg(p)
    p.add_argument(
        "--save-maps",
        action="store_true",
        help="also write DIR/maps/<image>.npy: float32 (k, height, width) maps in the image's pixels, not normalized",
    )
    p.add_argument(
        "--batch-size", type=positive, default=16, metavar="N", help="images per forward pass (default: %(default)s)"
    )
    p.add_argument(
        "--threshold",
        type=fraction,
        help="paper box rule: keep pixels >= this fraction of the map's max (default: the model file's own, "
        "which camloc train chooses on training images' boxes; else 0.2)",
    )
    p.add_argument("--alpha", type=fraction, default=0.5, help="heat-map opacity (default: %(default)s)")
    add_model_args(p, resize_default="full")
    add_map_size_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Explain the images of ``args.inputs``."""
    return explain_paths(args, args.inputs)


def explain_paths(args: argparse.Namespace, inputs: list[str]) -> int:
    """Explain ``inputs`` with the settings of ``args``; the exit status."""
    from ..distributed import world
    from ..evaluation.explain import collect_images, journal_path
    from ..reports.grids import explain

    missing = [i for i in inputs if not Path(i).exists()]
    folders = [i for i in missing if not is_image_file(i)]
    if folders or len(missing) == len(inputs):
        what = ", ".join(folders or missing)
        print(f"camloc: error: no such file or folder: {what}", file=sys.stderr)
        return 2
    paths = collect_images(inputs)
    if not paths:
        print("camloc: error: no image files found in " + ", ".join(inputs), file=sys.stderr)
        return 2
    json_path = Path(args.json) if args.json else Path(args.out) / "results.json"
    lock_output(json_path)
    check_outputs(args, journal_path(json_path), flag="--json" if args.json else "--out", resumable=True)
    check_outputs(args, json_path, flag="--json" if args.json else "--out")
    if getattr(args, "overwrite", False) and not getattr(args, "resume", False):
        _remove_pictures(json_path, Path(args.out))
    method, info = load_method(args)
    classes = resolve_classes(args.classes_wanted, info) if getattr(args, "classes_wanted", None) else None
    maps_dir = Path(args.out) / "maps" if getattr(args, "save_maps", False) else None
    with nothing_left_unless_done(args, journal_path(json_path)):
        result = explain(
            paths,
            method,
            info=info,
            topk=args.topk,
            classes=classes,
            out_dir=args.out,
            json_path=json_path,
            maps_dir=maps_dir,
            batch_size=args.batch_size,
            threshold=args.threshold,
            alpha=args.alpha,
            resume=getattr(args, "resume", False),
            map_size=map_size_of(args, info),
        )
    if not world().is_main:  # rank 0 of a torchrun launch prints for the run
        return 0
    if result.errors and not result.records:  # nothing read: leave nothing behind that stands in the next run's way
        json_path.unlink(missing_ok=True)
        release_locks()
        for folder in (Path(args.out) / "maps", Path(args.out)):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        more = f" (and {len(result.errors) - 1} more)" if len(result.errors) > 1 else ""
        print(f"camloc: error: no image could be read: {result.errors[0]}{more}", file=sys.stderr)
        return 2
    where = f"grids in {args.out}/" + (f", maps in {maps_dir}/" if maps_dir else "")
    print(
        f"camloc: explained {len(result.records)} image(s) with {info.name}, {method.name}: {where}, "
        f"results in {json_path}"
    )
    if result.errors:
        print(f"camloc: {len(result.errors)} file(s) could not be read:", file=sys.stderr)
        for err in result.errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    return 0


def _remove_pictures(json_path: Path, out: Path) -> None:
    """The grids and maps an earlier run's ``json_path`` lists under ``out`` (``--overwrite``: they would be stale)."""
    try:
        earlier = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return
    records = earlier.get("images", []) if isinstance(earlier, dict) else []
    for record in (r for r in records if isinstance(r, dict)):
        for key in ("grid", "maps"):
            path = Path(str(record.get(key, "")))
            if record.get(key) and path.resolve().is_relative_to(out.resolve()) and path.is_file():
                path.unlink()


def resolve_classes(wanted: list[str], info) -> list[int]:
    """Class indices of ``--class`` values: an index, or a class name (exact, then case-insensitive)."""
    names = list(info.class_names or [])
    count = len(names) if names else None
    out = []
    for text in wanted:
        if text.strip().lstrip("-").isdigit():
            index = int(text)
            if index < 0 or (count is not None and index >= count):
                raise InvalidArgument("class", f"--class {text}: index outside 0..{(count or 1) - 1}")
            out.append(index)
            continue
        exact = [i for i, n in enumerate(names) if n == text]
        loose = exact or [i for i, n in enumerate(names) if n.lower() == text.strip().lower()]
        if len(loose) != 1:
            near = [n for n in names if text.strip().lower() in n.lower()][:5]
            hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else did_you_mean(text, names)
            why = "is not a class name of this model" if not loose else "names several classes; use an index"
            raise InvalidArgument("class", f"--class {text!r} {why}{hint}")
        out.append(loose[0])
    return out
