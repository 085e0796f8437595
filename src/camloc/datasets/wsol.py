"""wsolevaluation's metadata folders (Choe et al., CVPR 2020): ImageNet, CUB and OpenImages splits.

a wsolevaluation metadata folder (or its parent holding ``train/ val/ test/``, then ``split`` picks
one): ``image_ids.txt`` and ``class_labels.txt`` are required; ``image_sizes.txt`` and
``localization.txt`` are read when present (OpenImages has no sizes; training splits have no
localization). ``localization.txt`` holds either boxes (``path,x0,y0,x1,y1``) or masks
(``path,mask.png,ignore.png``, ignore given on an image's first line only). Every file must cover
exactly the ids of ``image_ids.txt``. ``images=`` (required) is the image root, ``masks=`` the mask
root (default: the image root).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..box import Box
from ..errors import DatasetError
from .base import Dataset, Sample
from .classes import check_label, load_class_table
from .parsing import check_box, check_size, parse_int, read_lines, split_fields

__all__ = ["read_wsol"]


def read_wsol(meta: Path, images: Path | None, masks: Path | None, classes) -> Dataset:
    """Read one wsolevaluation metadata folder (the rules are in the module docstring).

    Args:
        meta: the folder holding ``image_ids.txt`` (one split, already chosen).
        images: the image root the ids are relative to (required: None raises a :class:`DatasetError`).
        masks: the mask root for OpenImages masks; None: ``images``.
        classes: a class file or a list of names supplying the class names (and checking the labels), or None.

    Returns:
        The :class:`Dataset`, one sample per id in the order of ``image_ids.txt``.
    """
    if images is None:
        raise DatasetError("the wsol format needs images= (the root the image ids are relative to)", meta)
    images = Path(images)
    table = load_class_table(classes) if classes is not None else None
    ids = _Ids(meta / "image_ids.txt")
    labels = _read_labels(meta / "class_labels.txt", ids, table)
    sizes_path = meta / "image_sizes.txt"
    sizes = _read_sizes(sizes_path, ids) if sizes_path.is_file() else {}
    loc_path = meta / "localization.txt"
    truth = _Localization()
    if loc_path.is_file():
        truth = _read_localization(loc_path, ids, sizes, Path(masks) if masks is not None else images)
    samples = [
        Sample(
            image_id,
            images / image_id,
            labels[image_id],
            tuple(truth.boxes.get(image_id, ())),
            sizes.get(image_id),
            tuple(truth.masks.get(image_id, ())),
            truth.ignore[image_id][0] if image_id in truth.ignore else None,
        )
        for image_id in ids.lines
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


class _Ids:
    """The ids of ``image_ids.txt`` (each with its line), and the checks every other file of the folder passes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[str, int] = {}  # id -> line in image_ids.txt
        for n, text in read_lines(path):
            if text in self.lines:
                raise DatasetError(f"duplicate image id {text!r} (first on line {self.lines[text]})", path, n)
            self.lines[text] = n

    def known(self, image_id: str, path: Path, n: int) -> None:
        """Raise unless ``image_id``, read on line ``n`` of ``path``, is one of the ids."""
        if image_id not in self.lines:
            raise DatasetError(f"image id {image_id!r} is not in image_ids.txt", path, n)

    def complete(self, found: dict, path: Path) -> None:
        """Raise, naming the first id missing, unless ``found`` (read from ``path``) holds every id."""
        for image_id, n in self.lines.items():
            if image_id not in found:
                raise DatasetError(f"image id {image_id!r} is missing from {path.name}", self.path, n)


def _read_labels(path: Path, ids: _Ids, table) -> dict[str, int]:
    """``class_labels.txt``: ``path,label`` for every id."""
    labels: dict[str, int] = {}
    lines: dict[str, int] = {}
    for n, text in read_lines(path):
        parts = text.rsplit(",", 1)
        if len(parts) != 2:
            raise DatasetError(f"expected 2 fields (path,label), got {len(parts)}", path, n)
        image_id, label_text = parts[0].strip(), parts[1].strip()
        ids.known(image_id, path, n)
        if image_id in labels:
            raise DatasetError(f"duplicate image id {image_id!r} (first on line {lines[image_id]})", path, n)
        label = parse_int(label_text, "label", path, n)
        check_label(label, table, path, n)
        labels[image_id], lines[image_id] = label, n
    ids.complete(labels, path)
    return labels


def _read_sizes(path: Path, ids: _Ids) -> dict[str, tuple[int, int]]:
    """``image_sizes.txt``: ``path,w,h`` for every id."""
    sizes: dict[str, tuple[int, int]] = {}
    lines: dict[str, int] = {}
    for n, text in read_lines(path):
        parts = text.rsplit(",", 2)
        if len(parts) != 3:
            raise DatasetError(f"expected 3 fields (path,w,h), got {len(parts)}", path, n)
        image_id = parts[0].strip()
        ids.known(image_id, path, n)
        if image_id in sizes:
            raise DatasetError(f"duplicate image id {image_id!r} (first on line {lines[image_id]})", path, n)
        w = parse_int(parts[1].strip(), "width", path, n)
        h = parse_int(parts[2].strip(), "height", path, n)
        sizes[image_id], lines[image_id] = check_size(w, h, path, n), n
    ids.complete(sizes, path)
    return sizes


@dataclass
class _Localization:
    """What ``localization.txt`` gives per id: boxes, or mask files and the ignore mask (with its line)."""

    boxes: dict[str, list[Box]] = field(default_factory=dict)
    masks: dict[str, list[Path]] = field(default_factory=dict)
    ignore: dict[str, tuple[Path | None, int]] = field(default_factory=dict)


def _read_localization(path: Path, ids: _Ids, sizes: dict[str, tuple[int, int]], masks: Path) -> _Localization:
    """``localization.txt``: boxes or masks (its first line decides which) for every id."""
    found = _Localization()
    kind = None
    for n, text in read_lines(path):
        if kind is None:
            tail = text.rsplit(",", 4)[1:]
            kind = "boxes" if len(tail) == 4 and all(_is_int(t) for t in tail) else "masks"
        if kind == "boxes":
            _read_box_line(text, path, n, ids, sizes, found)
        else:
            _read_mask_line(text, path, n, ids, masks, found)
    ids.complete(found.boxes if kind == "boxes" else found.masks, path)
    return found


def _read_box_line(
    text: str, path: Path, n: int, ids: _Ids, sizes: dict[str, tuple[int, int]], found: _Localization
) -> None:
    parts = text.rsplit(",", 4)
    if len(parts) != 5:
        raise DatasetError(f"expected 5 fields (path,x0,y0,x1,y1), got {len(parts)}", path, n)
    image_id = parts[0].strip()
    ids.known(image_id, path, n)
    box = tuple(parse_int(p.strip(), k, path, n) for p, k in zip(parts[1:], ("x0", "y0", "x1", "y1"), strict=True))
    check_box(box, sizes.get(image_id), path, n)  # type: ignore[arg-type]
    found.boxes.setdefault(image_id, []).append(box)  # type: ignore[arg-type]


def _read_mask_line(text: str, path: Path, n: int, ids: _Ids, masks: Path, found: _Localization) -> None:
    image_id, mask, ign = split_fields(text, ",", 3, "path,mask.png,ignore.png", path, n)
    ids.known(image_id, path, n)
    if not mask:
        raise DatasetError("empty mask path", path, n)
    if image_id in found.ignore:
        if ign:
            raise DatasetError(
                f"second ignore mask for {image_id!r} (first on line {found.ignore[image_id][1]}); "
                "only an image's first line may name one",
                path,
                n,
            )
    else:
        found.ignore[image_id] = (masks / ign if ign else None, n)
    found.masks.setdefault(image_id, []).append(masks / mask)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
