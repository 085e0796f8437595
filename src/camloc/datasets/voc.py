"""Pascal VOC and ILSVRC XML annotations.

a folder of Pascal VOC / ILSVRC XML annotations (or a root with an ``Annotations/`` folder), a class
table (``classes=``, or a ``classes.txt`` beside the XML) that maps ``<name>`` (WNID or class name)
to an index, images in ``images=`` (default: the sibling ``JPEGImages/``, else the XML folder).
``image_id`` is the XML file's stem. An image's label is its first ``<object>``'s class and only
that class's boxes are kept (ILSVRC localization images carry one class; a VOC image with several is
reduced to its first); an XML file without objects (a background image) is skipped. Coordinates are
used as they are (ILSVRC: 0-based inclusive) or, with ``one_based=True`` (Pascal VOC), shifted by
-1; non-integer coordinates are truncated. ``<size>`` gives ``Sample.size`` (0 or missing: None). A
``<filename>`` without an extension (ILSVRC) is looked up with the usual image extensions (``.JPEG``
when none exists).

:class:`VocWriter` writes the other way, as Pascal VOC does: ``Annotations/<name>.xml`` per image
(``size``, one ``object`` per box with ``name``, ``difficult`` 0 and a 1-based ``bndbox``),
``JPEGImages/`` with a link per image, ``ImageSets/Main/all.txt`` (the names) and ``classes.txt``
(``index name`` lines), so that ``read_voc(..., one_based=True)`` reads the same boxes back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from xml.parsers import expat
from xml.sax.saxutils import escape

from ..boxes.box import Box
from ..errors import DatasetError
from ..utils import IMAGE_SUFFIXES, atomic_path
from .base import Dataset, Sample
from .classes import load_class_table
from .labels import BoxWriter, ImageBoxes, link_image, write_text
from .parsing import check_box, parse_float

__all__ = ["VocWriter", "read_voc", "voc_xml"]


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


def read_voc(path: Path, images: Path | None, classes, one_based: bool) -> Dataset:
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
    table = load_class_table(classes)
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
            check_box(box, size, xml, bb.line)  # type: ignore[arg-type]
            boxes.append(box)  # type: ignore[arg-type]
        if label is None:  # an image without objects (a background image) has no label to evaluate
            continue
        image = _voc_image(images_dir, fn.value() if fn is not None else None, xml.stem)
        samples.append(Sample(xml.stem, image, label, tuple(boxes), size))
    if not samples:
        raise DatasetError("no XML file has an <object>: no image has a label", ann_dir)
    name = ann_dir.parent.name if ann_dir.name == "Annotations" else ann_dir.name
    return Dataset(name, "voc", ann_dir, samples, list(table.names), table.all_wnids)


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

    def __init__(self, out_dir: str | os.PathLike, class_names: Sequence[str] | None, **parts: bool) -> None:
        super().__init__(out_dir, class_names, **parts)
        if self.given_names is not None:
            index = load_class_table(self.given_names).index()
            clash = next((n for n in self.given_names if index[n] < 0), None)
            if clash is not None:  # <name> is all a VOC object says of its class
                raise DatasetError(f"class name {clash!r} names two classes; VOC files need distinct class names")
        self.annotations, self.images = self._folder("Annotations"), self._folder("JPEGImages")
        self.listed = None
        if self.whole_set:
            self.listed = open(self._folder("ImageSets/Main") / ".all.txt.part", "w")  # noqa: SIM115 - closed in close()

    def _write(self, image: ImageBoxes, name: str) -> None:
        if self.link_images:
            link_image(self.images, name, image.path)
        if self.per_image:
            xml = voc_xml(image, name + Path(image.path).suffix, self._names_upto(image))
            write_text(self.annotations / f"{name}.xml", xml)
        if self.listed is not None:
            self.listed.write(name + "\n")

    def _names_upto(self, image: ImageBoxes) -> list[str]:
        top = max((d.label for d in image.detections), default=-1)
        return self.given_names if self.given_names is not None else [str(i) for i in range(top + 1)]

    def close(self) -> None:
        """Write ``ImageSets/Main/all.txt`` and ``classes.txt``."""
        if self.listed is None:
            return
        self.listed.close()
        os.replace(self.listed.name, self.out_dir / "ImageSets" / "Main" / "all.txt")
        with atomic_path(self.out_dir / "classes.txt") as tmp:
            tmp.write_text("".join(f"{i} {n}\n" for i, n in enumerate(self.class_names)))

    def abort(self) -> None:
        """Keep the XML files written so far; drop the partial image list."""
        if self.listed is not None:
            self.listed.close()
            Path(self.listed.name).unlink(missing_ok=True)
