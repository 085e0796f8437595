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
    masks = Path(masks) if masks is not None else images
    table = load_class_table(classes) if classes is not None else None

    ids_path = meta / "image_ids.txt"
    ids: dict[str, int] = {}  # id -> line in image_ids.txt
    for n, text in read_lines(ids_path):
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
    for n, text in read_lines(labels_path):
        parts = text.rsplit(",", 1)
        if len(parts) != 2:
            raise DatasetError(f"expected 2 fields (path,label), got {len(parts)}", labels_path, n)
        image_id, label_text = parts[0].strip(), parts[1].strip()
        known(image_id, labels_path, n)
        if image_id in labels:
            raise DatasetError(f"duplicate image id {image_id!r} (first on line {lines[image_id]})", labels_path, n)
        label = parse_int(label_text, "label", labels_path, n)
        check_label(label, table, labels_path, n)
        labels[image_id], lines[image_id] = label, n
    complete(labels, labels_path)

    sizes: dict[str, tuple[int, int]] = {}
    sizes_path = meta / "image_sizes.txt"
    if sizes_path.is_file():
        lines = {}
        for n, text in read_lines(sizes_path):
            parts = text.rsplit(",", 2)
            if len(parts) != 3:
                raise DatasetError(f"expected 3 fields (path,w,h), got {len(parts)}", sizes_path, n)
            image_id = parts[0].strip()
            known(image_id, sizes_path, n)
            if image_id in sizes:
                raise DatasetError(f"duplicate image id {image_id!r} (first on line {lines[image_id]})", sizes_path, n)
            w = parse_int(parts[1].strip(), "width", sizes_path, n)
            h = parse_int(parts[2].strip(), "height", sizes_path, n)
            sizes[image_id], lines[image_id] = check_size(w, h, sizes_path, n), n
        complete(sizes, sizes_path)

    boxes: dict[str, list[Box]] = {}
    mask_paths: dict[str, list[Path]] = {}
    ignore: dict[str, tuple[Path | None, int]] = {}
    loc_path = meta / "localization.txt"
    if loc_path.is_file():
        kind = None
        for n, text in read_lines(loc_path):
            if kind is None:
                tail = text.rsplit(",", 4)[1:]
                kind = "boxes" if len(tail) == 4 and all(_is_int(t) for t in tail) else "masks"
            if kind == "boxes":
                parts = text.rsplit(",", 4)
                if len(parts) != 5:
                    raise DatasetError(f"expected 5 fields (path,x0,y0,x1,y1), got {len(parts)}", loc_path, n)
                image_id = parts[0].strip()
                known(image_id, loc_path, n)
                box = tuple(
                    parse_int(p.strip(), k, loc_path, n)
                    for p, k in zip(parts[1:], ("x0", "y0", "x1", "y1"), strict=True)
                )
                check_box(box, sizes.get(image_id), loc_path, n)  # type: ignore[arg-type]
                boxes.setdefault(image_id, []).append(box)  # type: ignore[arg-type]
            else:
                image_id, mask, ign = split_fields(text, ",", 3, "path,mask.png,ignore.png", loc_path, n)
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
