"""The ``csv`` layout: ``boxes.csv`` + ``images/`` (+ ``classes.txt``); camloc writes it too.

``boxes.csv`` with the columns ``image,width,height,label_index,label_name,x0,y0,x1,y1``, one row per
box (an image may have several rows, all with the same size and label), images under ``images/``,
optional ``classes.txt``. A row whose four box fields are empty is an image with a label and no box
(classification-only data); ``width``/``height`` may be empty too (size unknown). When class names
are known, a non-empty ``label_name`` must be the name (or WordNet id) of ``label_index``: this
catches off-by-one label columns. :func:`write_csv_dataset` writes this layout.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..box import Box
from ..errors import DatasetError, InvalidArgument
from ..utils import atomic_path
from .base import Dataset, Sample
from .classes import WNID, ClassTable, check_label, load_class_table
from .parsing import check_box, check_size, parse_int

__all__ = ["CSV_COLUMNS", "read_csv_layout", "write_csv_dataset"]


CSV_COLUMNS = ("image", "width", "height", "label_index", "label_name", "x0", "y0", "x1", "y1")


def read_csv_layout(root: Path, images: Path | None, classes) -> Dataset:
    """Read a folder in the csv layout (the rules are in the module docstring).

    Args:
        root: the folder holding ``boxes.csv`` (and, optionally, ``classes.txt``).
        images: the image folder; None: ``root/images``.
        classes: a class file or a list of names, used instead of ``root/classes.txt``; None: that
            file when it exists, else no class names.

    Returns:
        The :class:`Dataset`, one sample per image in the order of its first row.

    Raises:
        DatasetError: for a missing or malformed ``boxes.csv``, naming the file and line.
    """
    csv_path = root / "boxes.csv"
    if not csv_path.is_file():
        raise DatasetError("missing metadata file", csv_path)
    table = None
    if classes is not None:
        table = load_class_table(classes)
    elif (root / "classes.txt").is_file():
        table = load_class_table(root / "classes.txt")
    images_dir = Path(images) if images is not None else root / "images"
    records = _read_rows(csv_path, table)
    samples = [Sample(image, images_dir / image, r.label, tuple(r.boxes), r.size) for image, r in records.items()]
    return Dataset(
        root.name,
        "csv",
        root,
        samples,
        None if table is None else list(table.names),
        None if table is None else table.all_wnids,
    )


@dataclass
class _Image:
    """One image of ``boxes.csv``, as its rows give it: the line of its first row, size, label and boxes."""

    line: int
    size: tuple[int, int] | None
    label: int
    boxes: list[Box] = field(default_factory=list)
    boxless: bool = False  # its row has no box: it must be the image's only row


@dataclass(frozen=True)
class _Row:
    """One data row of ``boxes.csv``, checked."""

    image: str
    size: tuple[int, int] | None
    label: int
    box: Box | None


def _read_rows(csv_path: Path, table: ClassTable | None) -> dict[str, _Image]:
    """The images of ``boxes.csv`` in the order of their first row (blank rows skipped)."""
    records: dict[str, _Image] = {}
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header: list[str] | None = None
            for row in reader:
                n = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if header is None:
                    header = [c.strip() for c in row]
                    col = _columns(header, csv_path, n)
                    continue
                if len(row) != len(header):
                    raise DatasetError(f"expected {len(header)} fields, got {len(row)}", csv_path, n)
                _add_row(
                    records, _parse_row({c: row[i].strip() for c, i in col.items()}, table, csv_path, n), csv_path, n
                )
            if header is None:
                raise DatasetError(f"empty file; expected the header {','.join(CSV_COLUMNS)}", csv_path, 1)
    except csv.Error as e:
        raise DatasetError(f"malformed CSV: {e}", csv_path, reader.line_num) from None
    except UnicodeDecodeError:
        raise DatasetError("not valid UTF-8 text", csv_path) from None
    return records


def _columns(header: list[str], csv_path: Path, n: int) -> dict[str, int]:
    """Where each of :data:`CSV_COLUMNS` is in the header (on line ``n``); other columns are ignored."""
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise DatasetError(
            f"header lacks column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}",
            csv_path,
            n,
        )
    return {c: header.index(c) for c in CSV_COLUMNS}


def _parse_row(v: dict[str, str], table: ClassTable | None, csv_path: Path, n: int) -> _Row:
    """Line ``n``'s fields (stripped, by column name), checked against each other and the class names."""
    image = v["image"]
    if not image:
        raise DatasetError("empty image field", csv_path, n)
    size = None
    if v["width"] or v["height"]:
        size = check_size(
            parse_int(v["width"], "width", csv_path, n), parse_int(v["height"], "height", csv_path, n), csv_path, n
        )
    label = parse_int(v["label_index"], "label_index", csv_path, n)
    check_label(label, table, csv_path, n)
    name = v["label_name"]
    if name and table is not None and name not in (table.names[label], table.wnids[label]):
        raise DatasetError(
            f"label_name {name!r} is not class {label} ({table.names[label]!r} in {table.source})", csv_path, n
        )
    coords = [v[k] for k in ("x0", "y0", "x1", "y1")]
    box: Box | None = None
    if all(coords):
        x0, y0, x1, y1 = (parse_int(c, k, csv_path, n) for c, k in zip(coords, ("x0", "y0", "x1", "y1"), strict=True))
        box = (x0, y0, x1, y1)
        check_box(box, size, csv_path, n)
    elif any(coords):
        raise DatasetError("box fields must be all filled or all empty", csv_path, n)
    return _Row(image, size, label, box)


def _add_row(records: dict[str, _Image], row: _Row, csv_path: Path, n: int) -> None:
    """Add a row to its image, checking it agrees with the image's earlier rows."""
    rec = records.get(row.image)
    if rec is None:
        rec = records[row.image] = _Image(n, row.size, row.label, boxless=row.box is None)
    else:
        first = rec.line
        if rec.size != row.size:
            raise DatasetError(f"{row.image!r}: size {row.size} differs from {rec.size} on line {first}", csv_path, n)
        if rec.label != row.label:
            raise DatasetError(
                f"{row.image!r}: label {row.label} differs from {rec.label} on line {first}", csv_path, n
            )
        if rec.boxless or row.box is None:
            raise DatasetError(
                f"duplicate image {row.image!r} (line {first}); a box-less row must be the image's only row",
                csv_path,
                n,
            )
    if row.box is not None:
        rec.boxes.append(row.box)


def write_csv_dataset(
    dataset_samples: Iterable[Sample],
    root: str | Path,
    class_names: Sequence[str] | None = None,
    *,
    wnids: Sequence[str] | None = None,
) -> Path:
    """Write samples' metadata in the csv layout; returns the path of boxes.csv.

    Writes ``root/boxes.csv`` (and ``root/classes.txt`` when ``class_names`` is given) in the csv
    layout. The images are assumed to be in ``root/images`` already,
    under each sample's ``image_id``. A sample without boxes becomes one row with empty box fields;
    a sample without a size gets empty width/height. ``classes.txt`` lines are ``index wnid name``
    when ``wnids`` is given, else ``index name``. Reading the folder back with :func:`open_dataset`
    gives the same samples (with ``path = root/images/image_id``).
    """
    root = Path(root)
    samples = list(dataset_samples)
    names = None if class_names is None else [str(c) for c in class_names]
    if names is not None:
        for c in names:
            if not c.strip() or c != c.strip() or "\n" in c or "\r" in c:
                raise InvalidArgument(
                    "class_names", f"class name {c!r} cannot be written to classes.txt (empty, padded or multi-line)"
                )
    if wnids is not None:
        if names is None or len(wnids) != len(names):
            raise InvalidArgument("wnids", "wnids= needs class_names of the same length")
        bad = [w for w in wnids if not WNID.fullmatch(w)]
        if bad:
            raise InvalidArgument("wnids", f"wnids must look like n01440764, got {bad[0]!r}")
    seen: set[str] = set()
    rows = []
    for s in samples:
        if s.image_id in seen:
            raise InvalidArgument("samples", f"duplicate image_id {s.image_id!r}")
        seen.add(s.image_id)
        if not s.image_id or "\n" in s.image_id or "\r" in s.image_id:
            raise InvalidArgument("samples", f"image_id {s.image_id!r} cannot be written")
        if s.label < 0 or (names is not None and s.label >= len(names)):
            raise InvalidArgument("samples", f"{s.image_id}: label {s.label} outside the class list")
        w, h = ("", "") if s.size is None else s.size
        label_name = "" if names is None else names[s.label]
        if not s.boxes:
            rows.append([s.image_id, w, h, s.label, label_name, "", "", "", ""])
        for b in s.boxes:
            check_box(tuple(int(c) for c in b), s.size, Path(s.image_id), None)  # type: ignore[arg-type]
            rows.append([s.image_id, w, h, s.label, label_name, *(int(c) for c in b)])
    root.mkdir(parents=True, exist_ok=True)
    csv_path = root / "boxes.csv"
    if names is not None:  # first: a boxes.csv says the dataset is whole (finegrained resumes from its crops)
        with atomic_path(root / "classes.txt") as tmp, open(tmp, "w", encoding="utf-8") as f:
            for i, c in enumerate(names):
                f.write(f"{i} {wnids[i]} {c}\n" if wnids is not None else f"{i} {c}\n")
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    return csv_path
