"""Pascal VOC and ILSVRC XML annotations.

a folder of Pascal VOC / ILSVRC XML annotations (or a root with an ``Annotations/`` folder), a class
table (``classes=``, or a ``classes.txt`` beside the XML) that maps ``<name>`` (WNID or class name)
to an index, images in ``images=`` (default: the sibling ``JPEGImages/``, else the XML folder).
An image yields one :class:`~camloc.datasets.base.Sample` per class it has objects of, in the order
of their first ``<object>`` (``image_id`` the XML file's stem, ``stem#label`` when it has several
classes), as the COCO and YOLO readers do; an XML file without objects (a background image) is
skipped. Read lazily (below), a file is one sample: its first class. Coordinates are
used as they are (ILSVRC: 0-based inclusive) or, with ``one_based=True`` (Pascal VOC), shifted by
-1; non-integer coordinates are truncated. ``<size>`` gives ``Sample.size`` (0 or missing: None). A
``<filename>`` without an extension (ILSVRC) is looked up with the usual image extensions (``.JPEG``
when none exists).

From :data:`LAZY_FROM` XML files on (the 50,000 of the ILSVRC validation set), or with ``lazy=True``,
the files are only listed when the dataset is opened and each is parsed when its sample is asked for
(see :func:`read_voc`); then every XML file is a sample, and one without an ``<object>`` is an error.

:class:`VocWriter` writes the other way, as Pascal VOC does: ``Annotations/<name>.xml`` per image
(``size``, one ``object`` per box with ``name``, ``difficult`` 0 and a 1-based ``bndbox``),
``JPEGImages/<name>.jpg`` per image (a link or a copy; named ``.jpg`` whatever the file's format, as
VOC's readers, torchvision's ``VOCDetection`` among them, append ``.jpg`` to each id: image readers
go by the content), ``ImageSets/Main/{train,val,trainval}.txt`` (the names) and ``classes.txt``
(``index name`` lines), so that ``read_voc(..., one_based=True)`` reads the same boxes back.
A folder holding ``VOCdevkit/VOC20xx/`` (the layout torchvision opens) is read as that folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from xml.parsers import expat
from xml.sax.saxutils import escape

from ..box import Box
from ..errors import DatasetError
from ..utils import IMAGE_SUFFIXES, atomic_path
from .base import Dataset, LazySamples, Sample, class_samples
from .classes import ClassTable, load_class_table
from .folder import holds_a
from .labels import SPLITS, BoxWriter, ImageBoxes, write_text
from .parsing import check_box, parse_float

__all__ = ["LAZY_FROM", "VocWriter", "devkit_folder", "read_voc", "voc_xml"]

log = logging.getLogger(__name__)


class _Node:
    __slots__ = ("tag", "line", "text", "children")

    def __init__(self, tag: str, line: int):
        self.tag, self.line, self.text = tag, line, ""
        self.children: list[_Node] = []

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
        return int(parse_float(text, f"<{tag}>", path, node.line))


def _voc_image(images_dir: Path, filename: str | None, stem: str) -> Path:
    if filename and Path(filename).suffix:
        return images_dir / filename
    stem = filename or stem
    for suffix in (s for lower in IMAGE_SUFFIXES for s in (lower.upper(), lower)):
        if (images_dir / (stem + suffix)).is_file():
            return images_dir / (stem + suffix)
    return images_dir / (stem + ".JPEG")


#: From this many XML files on, ``read_voc`` reads lazily by default (docs/large-datasets.md: below it,
#: reading them all up front takes under a second and a few MB).
LAZY_FROM = 10_000


def devkit_folder(path: Path) -> Path:
    """``path/VOCdevkit/VOC20xx`` where ``path`` holds one such folder with ``Annotations/`` (and no XML of its own)."""
    if (path / "Annotations").is_dir() or not (path / "VOCdevkit").is_dir():
        return path
    found = sorted(p for p in (path / "VOCdevkit").glob("VOC*") if (p / "Annotations").is_dir())
    return found[0] if len(found) == 1 else path


def read_voc(path: Path, images: Path | None, classes, one_based: bool, lazy: bool | None = None) -> Dataset:
    """Pascal VOC / ILSVRC XML annotations; the rules are in the module docstring.

    ``lazy=False`` reads every XML file now: a problem in any raises at once, and files without an
    ``<object>`` are skipped. ``lazy=True`` lists the files and nothing more: the samples are
    :class:`~camloc.datasets.base.LazySamples`, one per XML file, each parsed when it is asked for, so
    memory stays flat whatever their number; a malformed file, or one without an ``<object>``,
    raises its one-line :class:`DatasetError` (file and line) when its sample is read. A run over the
    samples (``camloc evaluate``) then stops at that image with the message; the rows it wrote stay,
    and ``--resume`` goes on once the file is fixed. ``lazy=None``: lazy from :data:`LAZY_FROM` files on.
    """
    path = devkit_folder(path)
    ann_dir = path / "Annotations" if (path / "Annotations").is_dir() and not holds_a(path, ".xml") else path
    with os.scandir(ann_dir) as entries:
        names = sorted(e.name for e in entries if e.name.endswith(".xml") and e.is_file())
    if not names:
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
    table = load_class_table(classes)
    files = _XmlFiles(ann_dir, names, images_dir, table, 1 if one_based else 0)
    name = ann_dir.parent.name if ann_dir.name == "Annotations" else ann_dir.name
    if lazy or (lazy is None and len(names) >= LAZY_FROM):
        samples: Sequence[Sample] = LazySamples(files)
    else:
        samples = [s for i in range(len(names)) for s in files.samples(i)]
        if not samples:
            raise DatasetError("no XML file has an <object>: no image has a label", ann_dir)
    return Dataset(name, "voc", ann_dir, samples, list(table.names), table.all_wnids)


class _XmlFiles:
    """The XML files of one folder, each parsed into a :class:`Sample` when asked for (a ``SampleSource``)."""

    def __init__(self, ann_dir: Path, names: list[str], images_dir: Path, table: ClassTable, shift: int) -> None:
        self.ann_dir, self.names, self.images_dir, self.shift = ann_dir, names, images_dir, shift
        self.table, self.index = table, table.index()
        self.warned = False

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"the XML files of {self.ann_dir}"

    def read(self, i: int) -> Sample:
        """Sample ``i``: the file's first class; a file without an ``<object>`` has no label, and raises."""
        samples = self.samples(i)
        if not samples:
            raise DatasetError(
                "no <object>: no label (read lazily, every XML file is an image to evaluate)",
                self.ann_dir / self.names[i],
            )
        if len(samples) == 1:
            return samples[0]
        if not self.warned:  # the sample count was fixed when the files were listed: one a file
            self.warned = True
            log.warning("%s: holds several classes; read lazily, each file is its first class only (lazy=False reads "
                        "every class)", self.ann_dir / self.names[i])  # fmt: skip
        return replace(samples[0], image_id=Path(self.names[i]).stem)

    def samples(self, i: int) -> list[Sample]:
        """File ``i``'s samples, one per class in the order of their first ``<object>`` (none: a background image)."""
        xml = self.ann_dir / self.names[i]
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
        per_class: dict[int, list[Box]] = {}
        for obj in (c for c in root.children if c.tag == "object"):
            name_node = obj.find("name")
            if name_node is None or not name_node.value():
                raise DatasetError("<object> has no <name>", xml, obj.line)
            k = self.index.get(name_node.value())
            if k is None:
                raise DatasetError(
                    f"unknown class {name_node.value()!r} (not in {self.table.source})", xml, name_node.line
                )
            if k < 0:
                raise DatasetError(
                    f"class name {name_node.value()!r} is ambiguous in {self.table.source}; use WNIDs",
                    xml,
                    name_node.line,
                )
            boxes = per_class.setdefault(k, [])
            bb = obj.find("bndbox")
            if bb is None:
                continue
            box = tuple(_coord(bb.find(t), t, bb, xml) - self.shift for t in ("xmin", "ymin", "xmax", "ymax"))
            check_box(box, size, xml, bb.line)  # type: ignore[arg-type]
            boxes.append(box)  # type: ignore[arg-type]
        if not per_class:  # an image without objects (a background image) has no label to evaluate
            return []
        image = _voc_image(self.images_dir, fn.value() if fn is not None else None, xml.stem)
        return class_samples(xml.stem, image, per_class, size)


def voc_xml(image: ImageBoxes, file_name: str, class_names: Sequence[str]) -> str:
    """One image's boxes as a Pascal VOC annotation (1-based inclusive ``bndbox``)."""
    lines = [
        "<annotation>",
        "  <folder>JPEGImages</folder>",
        f"  <filename>{escape(file_name)}</filename>",
        f"  <path>{escape(str(image.path))}</path>",
        "  <source><database>camloc weak labels</database></source>",
        f"  <size><width>{image.width}</width><height>{image.height}</height><depth>3</depth></size>",
        "  <segmented>0</segmented>",
    ]
    for d in image.detections:
        x0, y0, x1, y1 = (v + 1 for v in d.box)
        lines += [
            "  <object>",
            f"    <name>{escape(class_names[d.label])}</name>",
            "    <pose>Unspecified</pose>",
            "    <truncated>0</truncated>",
            "    <difficult>0</difficult>",
            f"    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>",
            "  </object>",
        ]
    return "\n".join([*lines, "</annotation>"]) + "\n"


class VocWriter(BoxWriter):
    """Pascal VOC's layout (see the module docstring); each XML is written, atomically, as its image comes."""

    format = "voc"

    def __init__(self, out_dir: str | os.PathLike, class_names: Sequence[str] | None, **parts: Any) -> None:
        super().__init__(out_dir, class_names, **parts)
        if self.given_names is not None:
            index = load_class_table(self.given_names).index()
            clash = next((n for n in self.given_names if index[n] < 0), None)
            if clash is not None:  # <name> is all a VOC object says of its class
                raise DatasetError(f"class name {clash!r} names two classes; VOC files need distinct class names")
        self.listed: list[tuple[str, str]] = []  # (split, name), in the order written

    def image_folder(self, split: str) -> str:
        """``JPEGImages``, for every split."""
        return "JPEGImages"

    def image_file_name(self, image: ImageBoxes, name: str) -> str:
        """``<name>.jpg``: VOC's readers append ``.jpg`` to each id."""
        return name + ".jpg"

    def _write(self, image: ImageBoxes, name: str, split: str) -> None:
        self._place(image, name, split)
        if self.per_image:
            xml = voc_xml(image, self.image_file_name(image, name), self._names_upto(image))
            write_text(self._folder("Annotations") / f"{name}.xml", xml)
        if self.whole_set:
            self.listed.append((split, name))

    def _names_upto(self, image: ImageBoxes) -> list[str]:
        top = max((d.label for d in image.detections), default=-1)
        return self.given_names if self.given_names is not None else [str(i) for i in range(top + 1)]

    def close(self) -> None:
        """Write ``ImageSets/Main/{train,val,trainval}.txt`` and ``classes.txt``."""
        if not self.whole_set:
            return
        lists = {split: [n for s, n in self.listed if s == split] for split in SPLITS}
        lists["trainval"] = [n for _, n in self.listed]
        main = self._folder("ImageSets/Main")
        for split, names in lists.items():
            with atomic_path(main / f"{split}.txt") as tmp:
                tmp.write_text("".join(f"{n}\n" for n in names))
        with atomic_path(self.out_dir / "classes.txt") as tmp:
            tmp.write_text("".join(f"{i} {n}\n" for i, n in enumerate(self.class_names)))
