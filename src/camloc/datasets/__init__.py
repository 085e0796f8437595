"""Ground truth for localization: five on-disk layouts read into one list of :class:`Sample`.

Every box is ``(x0, y0, x1, y1)`` in inclusive, 0-based pixel coordinates of the image file itself
(see :mod:`camloc.boxes`). Metadata is checked while it is read; a problem raises a one-line
:class:`DatasetError` that names the file and, where there is one, the 1-based line. Image files are
*not* opened at read time (a missing or unreadable image is the evaluator's business), except that
CUB reads image headers to clip its boxes (see ``cub`` below).

Formats (``open_dataset(path, format=...)``):

``csv``
    ``boxes.csv`` with the columns ``image,width,height,label_index,label_name,x0,y0,x1,y1``, one row per
    box (an image may have several rows, all with the same size and label), images under ``images/``,
    optional ``classes.txt``. A row whose four box fields are empty is an image with a label and no box
    (classification-only data); ``width``/``height`` may be empty too (size unknown). When class names
    are known, a non-empty ``label_name`` must be the name (or WordNet id) of ``label_index``: this
    catches off-by-one label columns. :func:`write_csv_dataset` writes this layout.
``wsol``
    a wsolevaluation metadata folder (or its parent holding ``train/ val/ test/``, then ``split`` picks
    one): ``image_ids.txt`` and ``class_labels.txt`` are required; ``image_sizes.txt`` and
    ``localization.txt`` are read when present (OpenImages has no sizes; training splits have no
    localization). ``localization.txt`` holds either boxes (``path,x0,y0,x1,y1``) or masks
    (``path,mask.png,ignore.png``, ignore given on an image's first line only). Every file must cover
    exactly the ids of ``image_ids.txt``. ``images=`` (required) is the image root, ``masks=`` the mask
    root (default: the image root).
``cub``
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
``voc``
    a folder of Pascal VOC / ILSVRC XML annotations (or a root with an ``Annotations/`` folder), a class
    table (``classes=``, or a ``classes.txt`` beside the XML) that maps ``<name>`` (WNID or class name)
    to an index, images in ``images=`` (default: the sibling ``JPEGImages/``, else the XML folder).
    ``image_id`` is the XML file's stem. An image's label is its first ``<object>``'s class and only
    that class's boxes are kept (ILSVRC localization images carry one class; a VOC image with several
    is reduced to its first). Coordinates are used as they are (ILSVRC: 0-based inclusive) or, with
    ``one_based=True`` (Pascal VOC), shifted by -1; non-integer coordinates are truncated. ``<size>``
    gives ``Sample.size`` (0 or missing: None). A ``<filename>`` without an extension (ILSVRC) is
    looked up with the usual image extensions (``.JPEG`` when none exists).
``folder``
    torchvision's ImageFolder, classification only: ``root/<class>/<image>``, classes the sorted names
    of the (non-hidden) subfolders, labels in that order, or, with ``classes=``, the class table's
    index of each subfolder's name (or WNID). Images are the files directly inside a class folder with
    the suffixes of ``FOLDER_SUFFIXES`` (any case), sorted by name; ``image_id`` is ``class/file``;
    no boxes, no sizes. When every subfolder is named by a WNID, those are ``class_wnids``.
``auto``
    detected from the files present: ``boxes.csv`` -> csv, ``image_ids.txt`` -> wsol,
    ``images.txt`` + ``bounding_boxes.txt`` -> cub, ``*.xml`` -> voc; last, folder, when a subfolder
    holds images and nothing of the other layouts is there (``classes.txt``, ``images.txt``,
    ``images/``, ``Annotations/`` ...).

Procedurally drawn datasets with exact boxes (written in the csv or cub layout) come from
:mod:`camloc.datasets.synthetic`.

Class tables (``classes.txt`` of the csv layout, ``classes=`` of any format) are read by one rule:
when every line is ``INDEX REST`` the indices must run 0..n-1 and REST is ``WNID NAME`` (WNID like
``n01440764``), a bare WNID, or a NAME (which may contain spaces and commas); otherwise each line, in
index order, is ``WNID [NAME]`` (e.g. ImageNet's ``LOC_synset_mapping.txt``) or a bare name.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence
from xml.parsers import expat

from ..boxes import Box

__all__ = [
    "CSV_COLUMNS",
    "FOLDER_SUFFIXES",
    "FORMATS",
    "Dataset",
    "DatasetError",
    "Sample",
    "open_dataset",
    "read_class_table",
    "write_csv_dataset",
    "write_cub_dataset",
]

CSV_COLUMNS = ("image", "width", "height", "label_index", "label_name", "x0", "y0", "x1", "y1")
FORMATS = ("csv", "wsol", "cub", "voc", "folder")
CUB_SPLITS = ("train", "test", "all")

_WNID = re.compile(r"n\d{8}")
_INDEXED = re.compile(r"(\d+)\s+(\S.*)")
_IMAGE_SUFFIXES = (".JPEG", ".jpg", ".jpeg", ".JPG", ".png", ".PNG", ".bmp", ".webp")
FOLDER_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # matched case-insensitively
# files or folders of the other layouts: where one is present, auto-detection does not guess "folder"
_NOT_A_FOLDER_DATASET = (
    "boxes.csv",
    "classes.txt",
    "image_ids.txt",
    "images.txt",
    "image_class_labels.txt",
    "bounding_boxes.txt",
    "train_test_split.txt",
    "images",
    "Annotations",
    "JPEGImages",
)


@dataclass(frozen=True)
class Sample:
    image_id: str  # the id the format uses (relative path for wsol/csv/cub, file stem for VOC)
    path: Path  # the image file
    label: int  # 0-based class index
    boxes: tuple[Box, ...]  # GT boxes, inclusive, in the image file's own pixels; () when none
    size: tuple[int, int] | None  # (width, height) declared by the metadata, None if it declares none
    mask_paths: tuple[Path, ...] = ()  # wsol OpenImages: foreground masks
    ignore_path: Path | None = None  # wsol OpenImages: ignore mask


class DatasetError(ValueError):
    """Bad dataset metadata. The message is one line: ``FILE:LINE: what is wrong`` (``FILE: ...``
    when no single line is at fault); ``path`` and ``line`` hold the location."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        where = "" if path is None else (f"{path}:{line}: " if line else f"{path}: ")
        text = (where + message).replace("\r", " ").replace("\n", " ")
        super().__init__(text)
        self.path = None if path is None else Path(path)
        self.line = line


@dataclass
class Dataset:
    name: str
    format: str
    root: Path
    samples: list[Sample]
    class_names: list[str] | None
    class_wnids: list[str] | None = None  # WordNet ids when the class table gives one for every class

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    @property
    def num_boxes(self) -> int:
        return sum(len(s.boxes) for s in self.samples)


# --------------------------------------------------------------------------------------------
# small readers


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) of each non-blank line of a UTF-8 text file."""
    if not path.is_file():
        raise DatasetError("missing metadata file", path)
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for n, raw in enumerate(data.splitlines(), 1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DatasetError("not valid UTF-8 text", path, n) from None
        if text:
            yield n, text


def _int(text: str, what: str, path: Path, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{what} is not an integer: {text!r}", path, line) from None


def _float(text: str, what: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise DatasetError(f"{what} is not a number: {text!r}", path, line)
    return value


def _fields(
    text: str, sep: str | None, count: int, layout: str, path: Path, line: int, rest: bool = False
) -> list[str]:
    """Split ``text`` into exactly ``count`` fields; with ``rest`` the last field takes the rest of
    the line (a name or path with spaces)."""
    parts = text.split(sep, count - 1) if rest else text.split(sep)
    parts = [p.strip() for p in parts]
    if len(parts) != count:
        raise DatasetError(f"expected {count} fields ({layout}), got {len(parts)}", path, line)
    return parts


def _check_box(box: Box, size: tuple[int, int] | None, path: Path, line: int | None) -> None:
    x0, y0, x1, y1 = box
    if x0 < 0 or y0 < 0:
        raise DatasetError(f"box {box} starts outside the image (negative coordinate)", path, line)
    if x1 < x0 or y1 < y0:
        if size is None or (x0 < size[0] and y0 < size[1]):
            raise DatasetError(f"box {box} has x1 < x0 or y1 < y0", path, line)
    if size is not None:
        w, h = size
        if max(x0, x1) >= w or max(y0, y1) >= h:
            raise DatasetError(
                f"box {box} lies outside the {w}x{h} image (inclusive coordinates: x1 <= {w - 1}, y1 <= {h - 1})",
                path,
                line,
            )


def _check_size(w: int, h: int, path: Path, line: int) -> tuple[int, int]:
    if w <= 0 or h <= 0:
        raise DatasetError(f"image size {w}x{h} is not positive", path, line)
    return w, h


# --------------------------------------------------------------------------------------------
# class tables


@dataclass
class _Classes:
    names: list[str]
    wnids: list[str | None]
    source: str

    def index(self) -> dict[str, int]:
        """Name or WNID -> index; a key shared by two classes maps to -1 (ambiguous)."""
        out: dict[str, int] = {}
        for i, (name, wnid) in enumerate(zip(self.names, self.wnids)):
            for key in {name, wnid} - {None}:
                out[key] = -1 if key in out and out[key] != i else i
        return out

    @property
    def all_wnids(self) -> list[str] | None:
        return None if any(w is None for w in self.wnids) else list(self.wnids)  # type: ignore[arg-type]


def _split_entry(rest: str) -> tuple[str, str | None]:
    """``WNID NAME`` | ``WNID`` | ``NAME`` -> (name, wnid)."""
    head = rest.split(None, 1)[0]
    tail = rest[len(head) :].strip()
    if _WNID.fullmatch(head):
        return (tail or head), head
    return rest.strip(), None


def _parse_classes(lines: list[tuple[int, str]], source: str, path: Path | None) -> _Classes:
    if lines and all(_INDEXED.fullmatch(text) for _, text in lines):
        entries: dict[int, tuple[str, str | None]] = {}
        for n, text in lines:
            m = _INDEXED.fullmatch(text)
            assert m is not None
            i = int(m.group(1))
            if i in entries:
                raise DatasetError(f"class index {i} appears twice", path, n)
            if i >= len(lines):
                raise DatasetError(f"class index {i} is outside 0..{len(lines) - 1}", path, n)
            entries[i] = _split_entry(m.group(2))
        pairs = [entries[i] for i in range(len(lines))]
    else:
        pairs = [_split_entry(text) for _, text in lines]
    return _Classes([p[0] for p in pairs], [p[1] for p in pairs], source)


def _load_classes(classes: str | Path | Sequence[str]) -> _Classes:
    if isinstance(classes, (str, Path)):
        path = Path(classes)
        return _parse_classes(list(_read_lines(path)), str(path), path)
    items = [str(c).strip() for c in classes]
    if any(not c for c in items):
        raise ValueError("classes= holds an empty class name")
    pairs = [_split_entry(c) for c in items]
    return _Classes([p[0] for p in pairs], [p[1] for p in pairs], "classes=")


def read_class_table(path: str | Path) -> tuple[list[str], list[str] | None]:
    """A class file read by the module's rule: (names in index order, WNIDs or None)."""
    table = _load_classes(Path(path))
    return table.names, table.all_wnids


def _check_label(label: int, table: _Classes | None, path: Path, line: int) -> None:
    if label < 0:
        raise DatasetError(f"class label {label} is negative", path, line)
    if table is not None and label >= len(table.names):
        raise DatasetError(
            f"unknown class: label {label} is outside 0..{len(table.names) - 1} ({table.source})", path, line
        )


# --------------------------------------------------------------------------------------------
# csv


def _read_csv(root: Path, images: Path | None, classes) -> Dataset:
    csv_path = root / "boxes.csv"
    if not csv_path.is_file():
        raise DatasetError("missing metadata file", csv_path)
    table = None
    if classes is not None:
        table = _load_classes(classes)
    elif (root / "classes.txt").is_file():
        table = _load_classes(root / "classes.txt")
    images_dir = Path(images) if images is not None else root / "images"

    records: dict[str, dict] = {}
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = None
            for row in reader:
                n = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if header is None:
                    header = [c.strip() for c in row]
                    missing = [c for c in CSV_COLUMNS if c not in header]
                    if missing:
                        raise DatasetError(
                            f"header lacks column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}",
                            csv_path,
                            n,
                        )
                    col = {c: header.index(c) for c in CSV_COLUMNS}
                    continue
                if len(row) != len(header):
                    raise DatasetError(f"expected {len(header)} fields, got {len(row)}", csv_path, n)
                v = {c: row[i].strip() for c, i in col.items()}
                image = v["image"]
                if not image:
                    raise DatasetError("empty image field", csv_path, n)
                if v["width"] or v["height"]:
                    size = _check_size(
                        _int(v["width"], "width", csv_path, n), _int(v["height"], "height", csv_path, n), csv_path, n
                    )
                else:
                    size = None
                label = _int(v["label_index"], "label_index", csv_path, n)
                _check_label(label, table, csv_path, n)
                name = v["label_name"]
                if name and table is not None and name not in (table.names[label], table.wnids[label]):
                    raise DatasetError(
                        f"label_name {name!r} is not class {label} ({table.names[label]!r} in {table.source})",
                        csv_path,
                        n,
                    )
                coords = [v[k] for k in ("x0", "y0", "x1", "y1")]
                if all(coords):
                    x0, y0, x1, y1 = (_int(c, k, csv_path, n) for c, k in zip(coords, ("x0", "y0", "x1", "y1")))
                    box: Box | None = (x0, y0, x1, y1)
                    _check_box((x0, y0, x1, y1), size, csv_path, n)
                elif any(coords):
                    raise DatasetError("box fields must be all filled or all empty", csv_path, n)
                else:
                    box = None
                rec = records.get(image)
                if rec is None:
                    records[image] = {"line": n, "size": size, "label": label, "boxes": [], "boxless": box is None}
                    rec = records[image]
                else:
                    first = rec["line"]
                    if rec["size"] != size:
                        raise DatasetError(
                            f"{image!r}: size {size} differs from {rec['size']} on line {first}", csv_path, n
                        )
                    if rec["label"] != label:
                        raise DatasetError(
                            f"{image!r}: label {label} differs from {rec['label']} on line {first}", csv_path, n
                        )
                    if rec["boxless"] or box is None:
                        raise DatasetError(
                            f"duplicate image {image!r} (line {first}); a box-less row must be the image's only row",
                            csv_path,
                            n,
                        )
                if box is not None:
                    rec["boxes"].append(box)
            if header is None:
                raise DatasetError(f"empty file; expected the header {','.join(CSV_COLUMNS)}", csv_path, 1)
    except csv.Error as e:
        raise DatasetError(f"malformed CSV: {e}", csv_path, reader.line_num) from None
    except UnicodeDecodeError:
        raise DatasetError("not valid UTF-8 text", csv_path) from None

    samples = [
        Sample(image, images_dir / image, r["label"], tuple(r["boxes"]), r["size"]) for image, r in records.items()
    ]
    return Dataset(
        root.name,
        "csv",
        root,
        samples,
        None if table is None else list(table.names),
        None if table is None else table.all_wnids,
    )


def write_csv_dataset(
    dataset_samples: Iterable[Sample],
    root: str | Path,
    class_names: Sequence[str] | None = None,
    *,
    wnids: Sequence[str] | None = None,
) -> Path:
    """Write ``root/boxes.csv`` (and ``root/classes.txt`` when ``class_names`` is given) in the csv
    layout; returns the path of boxes.csv. The images are assumed to be in ``root/images`` already,
    under each sample's ``image_id``. A sample without boxes becomes one row with empty box fields;
    a sample without a size gets empty width/height. ``classes.txt`` lines are ``index wnid name``
    when ``wnids`` is given, else ``index name``. Reading the folder back with :func:`open_dataset`
    gives the same samples (with ``path = root/images/image_id``)."""
    root = Path(root)
    samples = list(dataset_samples)
    names = None if class_names is None else [str(c) for c in class_names]
    if names is not None:
        for c in names:
            if not c.strip() or c != c.strip() or "\n" in c or "\r" in c:
                raise ValueError(f"class name {c!r} cannot be written to classes.txt (empty, padded or multi-line)")
    if wnids is not None:
        if names is None or len(wnids) != len(names):
            raise ValueError("wnids= needs class_names of the same length")
        bad = [w for w in wnids if not _WNID.fullmatch(w)]
        if bad:
            raise ValueError(f"wnids must look like n01440764, got {bad[0]!r}")
    seen: set[str] = set()
    rows = []
    for s in samples:
        if s.image_id in seen:
            raise ValueError(f"duplicate image_id {s.image_id!r}")
        seen.add(s.image_id)
        if not s.image_id or "\n" in s.image_id or "\r" in s.image_id:
            raise ValueError(f"image_id {s.image_id!r} cannot be written")
        if s.label < 0 or (names is not None and s.label >= len(names)):
            raise ValueError(f"{s.image_id}: label {s.label} outside the class list")
        w, h = ("", "") if s.size is None else s.size
        label_name = "" if names is None else names[s.label]
        if not s.boxes:
            rows.append([s.image_id, w, h, s.label, label_name, "", "", "", ""])
        for b in s.boxes:
            _check_box(tuple(int(c) for c in b), s.size, Path(s.image_id), None)  # type: ignore[arg-type]
            rows.append([s.image_id, w, h, s.label, label_name, *(int(c) for c in b)])
    root.mkdir(parents=True, exist_ok=True)
    csv_path = root / "boxes.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    if names is not None:
        with open(root / "classes.txt", "w", encoding="utf-8") as f:
            for i, c in enumerate(names):
                f.write(f"{i} {wnids[i]} {c}\n" if wnids is not None else f"{i} {c}\n")
    return csv_path


# --------------------------------------------------------------------------------------------
# wsol


def _read_wsol(meta: Path, images: Path | None, masks: Path | None, classes) -> Dataset:
    if images is None:
        raise DatasetError("the wsol format needs images= (the root the image ids are relative to)", meta)
    images = Path(images)
    masks = Path(masks) if masks is not None else images
    table = _load_classes(classes) if classes is not None else None

    ids_path = meta / "image_ids.txt"
    ids: dict[str, int] = {}  # id -> line in image_ids.txt
    for n, text in _read_lines(ids_path):
        if text in ids:
            raise DatasetError(f"duplicate image id {text!r} (first on line {ids[text]})", ids_path, n)
        ids[text] = n

    def known(image_id: str, path: Path, n: int) -> None:
        if image_id not in ids:
            raise DatasetError(f"image id {image_id!r} is not in image_ids.txt", path, n)

    def complete(found: dict, path: Path) -> None:
        for image_id, n in ids.items():
            if image_id not in found:
                raise DatasetError(f"image id {image_id!r} is missing from {path.name}", ids_path, n)

    labels_path = meta / "class_labels.txt"
    labels: dict[str, int] = {}
    lines: dict[str, int] = {}
    for n, text in _read_lines(labels_path):
        parts = text.rsplit(",", 1)
        if len(parts) != 2:
            raise DatasetError(f"expected 2 fields (path,label), got {len(parts)}", labels_path, n)
        image_id, label_text = parts[0].strip(), parts[1].strip()
        known(image_id, labels_path, n)
        if image_id in labels:
            raise DatasetError(f"duplicate image id {image_id!r} (first on line {lines[image_id]})", labels_path, n)
        label = _int(label_text, "label", labels_path, n)
        _check_label(label, table, labels_path, n)
        labels[image_id], lines[image_id] = label, n
    complete(labels, labels_path)

    sizes: dict[str, tuple[int, int]] = {}
    sizes_path = meta / "image_sizes.txt"
    if sizes_path.is_file():
        lines = {}
        for n, text in _read_lines(sizes_path):
            parts = text.rsplit(",", 2)
            if len(parts) != 3:
                raise DatasetError(f"expected 3 fields (path,w,h), got {len(parts)}", sizes_path, n)
            image_id = parts[0].strip()
            known(image_id, sizes_path, n)
            if image_id in sizes:
                raise DatasetError(f"duplicate image id {image_id!r} (first on line {lines[image_id]})", sizes_path, n)
            w = _int(parts[1].strip(), "width", sizes_path, n)
            h = _int(parts[2].strip(), "height", sizes_path, n)
            sizes[image_id], lines[image_id] = _check_size(w, h, sizes_path, n), n
        complete(sizes, sizes_path)

    boxes: dict[str, list[Box]] = {}
    mask_paths: dict[str, list[Path]] = {}
    ignore: dict[str, tuple[Path | None, int]] = {}
    loc_path = meta / "localization.txt"
    if loc_path.is_file():
        kind = None
        for n, text in _read_lines(loc_path):
            if kind is None:
                tail = text.rsplit(",", 4)[1:]
                kind = "boxes" if len(tail) == 4 and all(_is_int(t) for t in tail) else "masks"
            if kind == "boxes":
                parts = text.rsplit(",", 4)
                if len(parts) != 5:
                    raise DatasetError(f"expected 5 fields (path,x0,y0,x1,y1), got {len(parts)}", loc_path, n)
                image_id = parts[0].strip()
                known(image_id, loc_path, n)
                box = tuple(_int(p.strip(), k, loc_path, n) for p, k in zip(parts[1:], ("x0", "y0", "x1", "y1")))
                _check_box(box, sizes.get(image_id), loc_path, n)  # type: ignore[arg-type]
                boxes.setdefault(image_id, []).append(box)  # type: ignore[arg-type]
            else:
                image_id, mask, ign = _fields(text, ",", 3, "path,mask.png,ignore.png", loc_path, n)
                known(image_id, loc_path, n)
                if not mask:
                    raise DatasetError("empty mask path", loc_path, n)
                if image_id in ignore:
                    if ign:
                        raise DatasetError(
                            f"second ignore mask for {image_id!r} (first on line {ignore[image_id][1]}); "
                            "only an image's first line may name one",
                            loc_path,
                            n,
                        )
                else:
                    ignore[image_id] = (masks / ign if ign else None, n)
                mask_paths.setdefault(image_id, []).append(masks / mask)
        complete(boxes if kind == "boxes" else mask_paths, loc_path)

    samples = [
        Sample(
            image_id,
            images / image_id,
            labels[image_id],
            tuple(boxes.get(image_id, ())),
            sizes.get(image_id),
            tuple(mask_paths.get(image_id, ())),
            ignore[image_id][0] if image_id in ignore else None,
        )
        for image_id in ids
    ]
    name = f"{meta.parent.name}/{meta.name}" if meta.parent.name else meta.name
    return Dataset(
        name,
        "wsol",
        meta,
        samples,
        None if table is None else list(table.names),
        None if table is None else table.all_wnids,
    )


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# cub


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except Exception:
        return None


def _read_cub(root: Path, images: Path | None, split: str, classes) -> Dataset:
    """CUB-200-2011 as distributed; the box rule is in the module docstring."""
    if split not in CUB_SPLITS:
        raise ValueError(f"cub split must be one of {CUB_SPLITS}, got {split!r}")
    images_dir = Path(images) if images is not None else root / "images"

    images_path = root / "images.txt"
    rel: dict[str, str] = {}
    line_of: dict[str, int] = {}
    for n, text in _read_lines(images_path):
        image_no, relpath = _fields(text, None, 2, "id path", images_path, n, rest=True)
        if image_no in rel:
            raise DatasetError(f"duplicate image id {image_no} (first on line {line_of[image_no]})", images_path, n)
        rel[image_no], line_of[image_no] = relpath, n

    def per_image(name: str, count: int, layout: str) -> dict[str, tuple[list[str], int]]:
        path = root / name
        out: dict[str, tuple[list[str], int]] = {}
        for n, text in _read_lines(path):
            parts = _fields(text, None, count, layout, path, n)
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
        table = _load_classes(classes)
    elif (root / "classes.txt").is_file():
        cpath = root / "classes.txt"
        names: dict[int, str] = {}
        for n, text in _read_lines(cpath):
            no, cname = _fields(text, None, 2, "class_id name", cpath, n, rest=True)
            k = _int(no, "class id", cpath, n)
            if k in names:
                raise DatasetError(f"duplicate class id {k}", cpath, n)
            if k != len(names) + 1:
                raise DatasetError(f"class ids must run 1, 2, ...; expected {len(names) + 1}, got {k}", cpath, n)
            names[k] = cname
        table = _Classes(list(names.values()), [None] * len(names), str(cpath))

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
        k = _int(cls, "class", labels_path, n)
        if k < 1:
            raise DatasetError(f"class {k}: CUB class ids start at 1", labels_path, n)
        _check_label(k - 1, table, labels_path, n)
        values, n = bboxes[image_no]
        x, y, w, h = (_float(v, k2, bbox_path, n) for v, k2 in zip(values, ("x", "y", "width", "height")))
        if w < 0 or h < 0:
            raise DatasetError(f"negative box width or height ({w}, {h})", bbox_path, n)
        box = [int(x), int(y), int(x + w), int(y + h)]
        path = images_dir / relpath
        header = _image_size(path)
        if header is not None:
            box[2], box[3] = min(box[2], header[0] - 1), min(box[3], header[1] - 1)
        _check_box(tuple(box), header, bbox_path, n)  # type: ignore[arg-type]
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
    """Write the CUB-200-2011 metadata files for samples whose images are already under
    ``root/images/<image_id>``: ``images.txt``, ``image_class_labels.txt`` (labels + 1),
    ``train_test_split.txt``, ``bounding_boxes.txt`` and, with ``class_names``, ``classes.txt``
    (``1 name`` ...). ``samples_by_split`` maps ``"train"`` and/or ``"test"`` to samples, numbered
    1, 2, ... in that order; each sample needs exactly one box. Returns ``root``.

    Boxes are written ``x0 y0 (x1 - x0) (y1 - y0)`` as floats, so that the reader's rule ``x1 =
    int(x + width)`` gives the inclusive box back exactly: :func:`open_dataset` with ``split=``
    returns the same image ids, paths, labels and boxes (sizes become None: CUB declares none)."""
    root = Path(root)
    names = None if class_names is None else [str(c) for c in class_names]
    for c in names or ():
        if not c.strip() or c != c.strip() or "\n" in c or "\r" in c:
            raise ValueError(f"class name {c!r} cannot be written to classes.txt (empty, padded or multi-line)")
    unknown = set(samples_by_split) - {"train", "test"}
    if unknown:
        raise ValueError(f"split {sorted(unknown)[0]!r}: CUB has only train and test")
    images, labels, splits, boxes = [], [], [], []
    seen: set[str] = set()
    for split, samples in samples_by_split.items():
        for s in samples:
            no = len(images) + 1
            if s.image_id in seen:
                raise ValueError(f"duplicate image_id {s.image_id!r}")
            seen.add(s.image_id)
            if not s.image_id or s.image_id != s.image_id.strip() or "\n" in s.image_id or "\r" in s.image_id:
                raise ValueError(f"image_id {s.image_id!r} cannot be written to images.txt")
            if s.label < 0 or (names is not None and s.label >= len(names)):
                raise ValueError(f"{s.image_id}: label {s.label} outside the class list")
            if len(s.boxes) != 1:
                raise ValueError(f"{s.image_id}: CUB holds one box per image, this sample has {len(s.boxes)}")
            x0, y0, x1, y1 = (int(c) for c in s.boxes[0])
            _check_box((x0, y0, x1, y1), s.size, Path(s.image_id), None)
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


# --------------------------------------------------------------------------------------------
# folder (ImageFolder)


def _folder_images(folder: Path) -> list[Path]:
    """The image files directly inside ``folder`` (not below it), sorted by name; hidden files skipped."""
    images = [p for p in folder.iterdir() if p.suffix.lower() in FOLDER_SUFFIXES and not p.name.startswith(".")]
    return sorted((p for p in images if p.is_file()), key=lambda p: p.name)


def _class_folders(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _read_folder(root: Path, classes) -> Dataset:
    """root/<class>/<image>: the rules are in the module docstring."""
    folders = _class_folders(root)
    if classes is not None:
        table = _load_classes(classes)
        index = table.index()
        labels = []
        for folder in folders:
            k = index.get(folder.name)
            if k is None or k < 0:
                why = "is not in" if k is None else "is ambiguous in"
                raise DatasetError(f"class folder {folder.name!r} {why} {table.source}", root)
            labels.append(k)
    else:
        names = [f.name for f in folders]
        table = _Classes(names, [n if _WNID.fullmatch(n) else None for n in names], str(root))
        labels = list(range(len(folders)))
    samples = [
        Sample(f"{folder.name}/{image.name}", image, label, (), None)
        for folder, label in zip(folders, labels)
        for image in _folder_images(folder)
    ]
    if not samples:
        raise DatasetError(
            f"no images in class subfolders (folder format: <class>/<image> with {', '.join(FOLDER_SUFFIXES)})", root
        )
    return Dataset(root.name, "folder", root, samples, list(table.names), table.all_wnids)


# --------------------------------------------------------------------------------------------
# voc


class _Node:
    __slots__ = ("tag", "line", "text", "children")

    def __init__(self, tag: str, line: int):
        self.tag, self.line, self.text, self.children = tag, line, "", []

    def find(self, tag: str) -> _Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def value(self) -> str:
        return self.text.strip()


def _parse_xml(path: Path) -> _Node:
    """A minimal element tree that remembers each element's line (ElementTree does not)."""
    parser = expat.ParserCreate()
    stack: list[_Node] = []
    top: list[_Node] = []

    def start(tag, _attrs):
        node = _Node(tag, parser.CurrentLineNumber)
        (stack[-1].children if stack else top).append(node)
        stack.append(node)

    def end(_tag):
        stack.pop()

    def chars(data):
        if stack:
            stack[-1].text += data

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, chars
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
    except expat.ExpatError as e:
        raise DatasetError(f"malformed XML: {expat.ErrorString(e.code)}", path, e.lineno) from None
    return top[0]


def _coord(node: _Node | None, tag: str, parent: _Node, path: Path) -> int:
    if node is None:
        raise DatasetError(f"<{parent.tag}> has no <{tag}>", path, parent.line)
    text = node.value()
    try:
        return int(text)
    except ValueError:
        return int(_float(text, f"<{tag}>", path, node.line))


def _voc_image(images_dir: Path, filename: str | None, stem: str) -> Path:
    if filename and Path(filename).suffix:
        return images_dir / filename
    stem = filename or stem
    for suffix in _IMAGE_SUFFIXES:
        if (images_dir / (stem + suffix)).is_file():
            return images_dir / (stem + suffix)
    return images_dir / (stem + ".JPEG")


def _read_voc(path: Path, images: Path | None, classes, one_based: bool) -> Dataset:
    """Pascal VOC / ILSVRC XML annotations; the rules are in the module docstring."""
    ann_dir = path / "Annotations" if (path / "Annotations").is_dir() and not any(path.glob("*.xml")) else path
    xmls = sorted(ann_dir.glob("*.xml"))
    if not xmls:
        raise DatasetError("no *.xml annotation files", ann_dir)
    if images is not None:
        images_dir = Path(images)
    elif (ann_dir.parent / "JPEGImages").is_dir():
        images_dir = ann_dir.parent / "JPEGImages"
    else:
        images_dir = ann_dir
    if classes is None:
        found = [p for p in (ann_dir / "classes.txt", ann_dir.parent / "classes.txt") if p.is_file()]
        if not found:
            raise DatasetError(
                "the voc format needs classes= (a file with one class a line, or 'index wnid name' lines)", ann_dir
            )
        classes = found[0]
    table = _load_classes(classes)
    index = table.index()
    shift = 1 if one_based else 0

    samples = []
    for xml in xmls:
        root = _parse_xml(xml)
        if root.tag != "annotation":
            raise DatasetError(f"root element is <{root.tag}>, expected <annotation>", xml, root.line)
        fn = root.find("filename")
        size = None
        size_node = root.find("size")
        if size_node is not None:
            w = _coord(size_node.find("width"), "width", size_node, xml)
            h = _coord(size_node.find("height"), "height", size_node, xml)
            size = (w, h) if w > 0 and h > 0 else None
        label = None
        boxes: list[Box] = []
        for obj in (c for c in root.children if c.tag == "object"):
            name_node = obj.find("name")
            if name_node is None or not name_node.value():
                raise DatasetError("<object> has no <name>", xml, obj.line)
            k = index.get(name_node.value())
            if k is None:
                raise DatasetError(f"unknown class {name_node.value()!r} (not in {table.source})", xml, name_node.line)
            if k < 0:
                raise DatasetError(
                    f"class name {name_node.value()!r} is ambiguous in {table.source}; use WNIDs", xml, name_node.line
                )
            if label is None:
                label = k
            if k != label:
                continue
            bb = obj.find("bndbox")
            if bb is None:
                continue
            box = tuple(_coord(bb.find(t), t, bb, xml) - shift for t in ("xmin", "ymin", "xmax", "ymax"))
            _check_box(box, size, xml, bb.line)  # type: ignore[arg-type]
            boxes.append(box)  # type: ignore[arg-type]
        if label is None:
            raise DatasetError("no <object>: the image has no label", xml, root.line)
        image = _voc_image(images_dir, fn.value() if fn is not None else None, xml.stem)
        samples.append(Sample(xml.stem, image, label, tuple(boxes), size))
    name = ann_dir.parent.name if ann_dir.name == "Annotations" else ann_dir.name
    return Dataset(name, "voc", ann_dir, samples, list(table.names), table.all_wnids)


# --------------------------------------------------------------------------------------------
# entry point


def _detect(path: Path, split: str) -> tuple[str, Path]:
    if path.is_file():
        if path.name == "boxes.csv":
            return "csv", path.parent
        if path.name == "image_ids.txt":
            return "wsol", path.parent
        raise DatasetError("cannot tell the dataset format of this file (give the dataset's folder)", path)
    if not path.is_dir():
        raise DatasetError("no such dataset folder", path)
    if (path / "boxes.csv").is_file():
        return "csv", path
    if (path / "image_ids.txt").is_file() or (path / split / "image_ids.txt").is_file():
        return "wsol", path
    if (path / "images.txt").is_file() and (path / "bounding_boxes.txt").is_file():
        return "cub", path
    if any(path.glob("*.xml")) or any((path / "Annotations").glob("*.xml")):
        return "voc", path
    if not any((path / marker).exists() for marker in _NOT_A_FOLDER_DATASET) and any(
        _folder_images(folder) for folder in _class_folders(path)
    ):
        return "folder", path
    raise DatasetError(
        "cannot tell the dataset format: looked for boxes.csv (csv), image_ids.txt or "
        f"{split}/image_ids.txt (wsol), images.txt + bounding_boxes.txt (cub), *.xml or Annotations/*.xml (voc), "
        "<class>/<image> subfolders and no other layout's files (folder)",
        path,
    )


def open_dataset(
    path: str | Path,
    format: str = "auto",
    *,
    images: str | Path | None = None,
    split: str = "test",
    classes: str | Path | Sequence[str] | None = None,
    one_based: bool = False,
    masks: str | Path | None = None,
) -> Dataset:
    """Read a dataset's metadata into a :class:`Dataset` (see the module docstring for the layouts).

    ``images``: the image folder (csv: default ``images/``; wsol: required; cub: default ``images/``;
    voc: default the sibling ``JPEGImages/`` or the annotation folder; folder: not allowed). ``split``: cub ``"train" |
    "test" | "all"``; wsol: the subfolder to use when ``path`` holds ``train/ val/ test/``.
    ``classes``: a class file or a list of names; voc needs it (or a ``classes.txt`` beside the XML)
    to map ``<name>`` to an index; for folder it maps each subfolder's name to its label; for the other
    formats it supplies or overrides the class names.
    ``one_based``: voc only, subtract 1 from every coordinate (Pascal VOC). ``masks``: wsol
    OpenImages mask root (default: ``images``).
    """
    path = Path(path)
    if format == "auto":
        format, path = _detect(path, split)
    elif format not in FORMATS:
        raise ValueError(f"unknown dataset format {format!r}; expected one of auto, {', '.join(FORMATS)}")
    elif path.is_file() and format in ("csv", "wsol"):
        path = path.parent
    if one_based and format != "voc":
        raise ValueError("one_based= applies to the voc format only")
    if format != "csv" and not path.is_dir():
        raise DatasetError("no such dataset folder", path)
    if format == "csv":
        return _read_csv(path, None if images is None else Path(images), classes)
    if format == "wsol":
        if not (path / "image_ids.txt").is_file() and (path / split / "image_ids.txt").is_file():
            path = path / split
        return _read_wsol(path, None if images is None else Path(images), masks, classes)
    if format == "cub":
        return _read_cub(path, None if images is None else Path(images), split, classes)
    if format == "folder":
        if images is not None:
            raise ValueError("images= does not apply to the folder format (the images are the dataset)")
        return _read_folder(path, classes)
    return _read_voc(path, None if images is None else Path(images), classes, one_based)
