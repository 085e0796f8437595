"""CUB-200-2011 as distributed (Wah et al., 2011); camloc writes the layout too.

CUB-200-2011 as distributed: ``images.txt``, ``image_class_labels.txt`` (classes 1..200, made
0-based), ``train_test_split.txt`` (``split="train" | "test" | "all"``), ``bounding_boxes.txt``,
optional ``classes.txt``, images under ``images/``; ``image_id`` is the relative path, as in
wsolevaluation's CUB metadata. Box rule, wsolevaluation's: ``x y width height`` (floats) becomes
``x0 = int(x), y0 = int(y), x1 = int(x + width), y1 = int(y + height)`` (checked against its
``metadata/CUB/test/localization.txt``: image 1, ``60 27 325 304`` -> ``60,27,385,331``; image 3,
``14 112 388 186`` -> ``14,112,402,298``), then ``x1``/``y1`` are clipped to ``W - 1``/``H - 1``
when the image header can be read. Read as inclusive coordinates this is one pixel wider and
taller than the annotated rectangle; camloc keeps wsolevaluation's numbers so that scores compare.
CUB declares no sizes, so ``Sample.size`` is None. :func:`write_cub_dataset` writes this layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..errors import DatasetError, InvalidArgument
from .base import Dataset, Sample
from .classes import ClassTable, check_label, load_class_table
from .parsing import check_box, parse_float, parse_int, read_lines, split_fields

__all__ = ["CUB_SPLITS", "read_cub", "write_cub_dataset"]


CUB_SPLITS = ("train", "test", "all")


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except Exception:
        return None


def read_cub(root: Path, images: Path | None, split: str, classes) -> Dataset:
    """CUB-200-2011 as distributed; the box rule is in the module docstring."""
    if split not in CUB_SPLITS:
        raise InvalidArgument("split", f"cub split must be one of {CUB_SPLITS}, got {split!r}")
    images_dir = Path(images) if images is not None else root / "images"

    images_path = root / "images.txt"
    rel: dict[str, str] = {}
    line_of: dict[str, int] = {}
    for n, text in read_lines(images_path):
        image_no, relpath = split_fields(text, None, 2, "id path", images_path, n, rest=True)
        if image_no in rel:
            raise DatasetError(f"duplicate image id {image_no} (first on line {line_of[image_no]})", images_path, n)
        rel[image_no], line_of[image_no] = relpath, n

    def per_image(name: str, count: int, layout: str) -> dict[str, tuple[list[str], int]]:
        path = root / name
        out: dict[str, tuple[list[str], int]] = {}
        for n, text in read_lines(path):
            parts = split_fields(text, None, count, layout, path, n)
            if parts[0] not in rel:
                raise DatasetError(f"image id {parts[0]} is not in images.txt", path, n)
            if parts[0] in out:
                raise DatasetError(f"duplicate image id {parts[0]} (first on line {out[parts[0]][1]})", path, n)
            out[parts[0]] = (parts[1:], n)
        for image_no, n in line_of.items():
            if image_no not in out:
                raise DatasetError(f"image id {image_no} is missing from {name}", images_path, n)
        return out

    table = None
    if classes is not None:
        table = load_class_table(classes)
    elif (root / "classes.txt").is_file():
        cpath = root / "classes.txt"
        names: dict[int, str] = {}
        for n, text in read_lines(cpath):
            no, cname = split_fields(text, None, 2, "class_id name", cpath, n, rest=True)
            k = parse_int(no, "class id", cpath, n)
            if k in names:
                raise DatasetError(f"duplicate class id {k}", cpath, n)
            if k != len(names) + 1:
                raise DatasetError(f"class ids must run 1, 2, ...; expected {len(names) + 1}, got {k}", cpath, n)
            names[k] = cname
        table = ClassTable(list(names.values()), [None] * len(names), str(cpath))

    labels_path = root / "image_class_labels.txt"
    labels = per_image("image_class_labels.txt", 2, "id class")
    need_split = split != "all" or (root / "train_test_split.txt").is_file()
    split_of = per_image("train_test_split.txt", 2, "id is_train") if need_split else {}
    bbox_path = root / "bounding_boxes.txt"
    bboxes = per_image("bounding_boxes.txt", 5, "id x y width height")

    samples = []
    for image_no, relpath in rel.items():
        if split_of:
            (flag,), n = split_of[image_no]
            if flag not in ("0", "1"):
                raise DatasetError(f"is_train must be 0 or 1, got {flag!r}", root / "train_test_split.txt", n)
            if split != "all" and (flag == "1") != (split == "train"):
                continue
        (cls,), n = labels[image_no]
        k = parse_int(cls, "class", labels_path, n)
        if k < 1:
            raise DatasetError(f"class {k}: CUB class ids start at 1", labels_path, n)
        check_label(k - 1, table, labels_path, n)
        values, n = bboxes[image_no]
        x, y, w, h = (
            parse_float(v, k2, bbox_path, n) for v, k2 in zip(values, ("x", "y", "width", "height"), strict=True)
        )
        if w < 0 or h < 0:
            raise DatasetError(f"negative box width or height ({w}, {h})", bbox_path, n)
        box = [int(x), int(y), int(x + w), int(y + h)]
        path = images_dir / relpath
        header = _image_size(path)
        if header is not None:
            box[2], box[3] = min(box[2], header[0] - 1), min(box[3], header[1] - 1)
        check_box(tuple(box), header, bbox_path, n)  # type: ignore[arg-type]
        samples.append(Sample(relpath, path, k - 1, (tuple(box),), None))  # type: ignore[arg-type]
    return Dataset(
        root.name if split == "all" else f"{root.name}/{split}",
        "cub",
        root,
        samples,
        None if table is None else list(table.names),
        None if table is None else table.all_wnids,
    )


def write_cub_dataset(
    samples_by_split: Mapping[str, Iterable[Sample]],
    root: str | Path,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write the CUB-200-2011 metadata files of samples; returns ``root``.

    The samples' images are already under
    ``root/images/<image_id>``: ``images.txt``, ``image_class_labels.txt`` (labels + 1),
    ``train_test_split.txt``, ``bounding_boxes.txt`` and, with ``class_names``, ``classes.txt``
    (``1 name`` ...). ``samples_by_split`` maps ``"train"`` and/or ``"test"`` to samples, numbered
    1, 2, ... in that order; each sample needs exactly one box. Returns ``root``.

    Boxes are written ``x0 y0 (x1 - x0) (y1 - y0)`` as floats, so that the reader's rule ``x1 =
    int(x + width)`` gives the inclusive box back exactly: :func:`open_dataset` with ``split=``
    returns the same image ids, paths, labels and boxes (sizes become None: CUB declares none).
    """
    root = Path(root)
    names = None if class_names is None else [str(c) for c in class_names]
    for c in names or ():
        if not c.strip() or c != c.strip() or "\n" in c or "\r" in c:
            raise InvalidArgument(
                "class_names", f"class name {c!r} cannot be written to classes.txt (empty, padded or multi-line)"
            )
    unknown = set(samples_by_split) - {"train", "test"}
    if unknown:
        raise InvalidArgument("samples_by_split", f"split {sorted(unknown)[0]!r}: CUB has only train and test")
    images: list[str] = []
    labels: list[str] = []
    splits: list[str] = []
    boxes: list[str] = []
    seen: set[str] = set()
    for split, samples in samples_by_split.items():
        for s in samples:
            no = len(images) + 1
            if s.image_id in seen:
                raise InvalidArgument("samples_by_split", f"duplicate image_id {s.image_id!r}")
            seen.add(s.image_id)
            if not s.image_id or s.image_id != s.image_id.strip() or "\n" in s.image_id or "\r" in s.image_id:
                raise InvalidArgument("samples_by_split", f"image_id {s.image_id!r} cannot be written to images.txt")
            if s.label < 0 or (names is not None and s.label >= len(names)):
                raise InvalidArgument("samples_by_split", f"{s.image_id}: label {s.label} outside the class list")
            if len(s.boxes) != 1:
                raise InvalidArgument(
                    "samples_by_split", f"{s.image_id}: CUB holds one box per image, this sample has {len(s.boxes)}"
                )
            x0, y0, x1, y1 = (int(c) for c in s.boxes[0])
            check_box((x0, y0, x1, y1), s.size, Path(s.image_id), None)
            images.append(f"{no} {s.image_id}\n")
            labels.append(f"{no} {s.label + 1}\n")
            splits.append(f"{no} {int(split == 'train')}\n")
            boxes.append(f"{no} {float(x0)} {float(y0)} {float(x1 - x0)} {float(y1 - y0)}\n")
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "images.txt": images,
        "image_class_labels.txt": labels,
        "train_test_split.txt": splits,
        "bounding_boxes.txt": boxes,
    }
    if names is not None:
        files["classes.txt"] = [f"{i + 1} {c}\n" for i, c in enumerate(names)]
    for name, lines in files.items():
        (root / name).write_text("".join(lines), encoding="utf-8")
    return root
