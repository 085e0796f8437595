"""WebDataset tar shards: images with their labels and boxes, read in place from the archives.

The dataset is one shard (``val-000.tar``), a folder of shards (its ``*.tar``, sorted by name) or a
brace pattern (``val-{000..063}.tar``, ``{train,val}-0.tar``: integer ranges, zero-padded as
written, and lists, not nested), the shards taken in that order. Shards are uncompressed tar files,
as WebDataset writes them. A member's *key* is its name up to the first ``.`` of its last path
component and its *extension* the rest (``val/ILSVRC2012_val_00000001.jpg``: key
``val/ILSVRC2012_val_00000001``, extension ``jpg``); consecutive members of one key make one
sample, whose ``image_id`` is the key. Of a sample's members camloc reads:

- the image: the one member whose extension is an image suffix (``jpg``, ``jpeg``, ``png``,
  ``webp``, ... in any case: :data:`camloc.utils.IMAGE_SUFFIXES`), read in place through a
  :class:`~camloc.utils.TarMember`;
- ``cls``: the class index as ASCII digits (WebDataset's convention, ``417``);
- ``json``: an object of which ``label`` (the class index), ``boxes`` (a list of ``[x0, y0, x1,
  y1]``: inclusive, 0-based integer pixels of the image), ``width`` and ``height`` (both or neither:
  ``Sample.size``, which the boxes are checked against) are read, every key optional, others ignored.

A sample needs a label, from ``cls`` or ``json`` (from both, they must agree). Other members
(``txt``, ``seg.png``, ...), members that are not regular files, names without a ``.`` and
WebDataset's ``__...__`` metadata files are skipped. Class names come from ``classes=`` or a
``classes.txt`` beside the first shard, else there are none.

Opening the dataset reads every shard's member headers, not their data: a damaged or compressed
archive, a sample without an image or with two, or an extension twice in one sample raise a
:class:`DatasetError` then, naming the shard and the member. The samples are
:class:`~camloc.datasets.base.LazySamples`: a sample's ``cls`` and ``json`` are read when it is asked
for, and their problems raise then, naming ``SHARD/MEMBER`` (and the line, for JSON syntax). The index
keeps each sample's key and where its members lie: about 200 bytes a sample (docs/large-datasets.md).
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from array import array
from pathlib import Path

from ..box import Box
from ..errors import DatasetError
from ..utils import IMAGE_SUFFIXES, TarMember
from .base import Dataset, LazySamples, Sample
from .classes import ClassTable, check_label, load_class_table
from .parsing import check_box, check_size, parse_int

__all__ = ["expand_braces", "read_webdataset", "shard_paths"]

_IMAGE_EXTENSIONS = frozenset(s[1:] for s in IMAGE_SUFFIXES)
_GROUP = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")
_FIELDS = 7  # per sample: shard, image offset and size, cls offset and size, json offset and size (-1: absent)


def expand_braces(pattern: str) -> list[str]:
    """The names a brace pattern stands for, as bash expands it: ``{a,b}`` lists and ``{N..M}`` ranges.

    A range is zero-padded to the width of its widest end when either end is written with a leading
    zero. Groups are expanded left to right; a group that is neither, and nested groups, stay as written.

    >>> expand_braces("val-{08..10}.tar")
    ['val-08.tar', 'val-09.tar', 'val-10.tar']
    >>> expand_braces("{train,val}-{1..2}.tar")
    ['train-1.tar', 'train-2.tar', 'val-1.tar', 'val-2.tar']
    """
    for group in _GROUP.finditer(pattern):
        items = _group_items(group.group(1))
        if items is not None:
            head, tail = pattern[: group.start()], pattern[group.end() :]
            return [head + item + rest for item in items for rest in expand_braces(tail)]
    return [pattern]


def _group_items(body: str) -> list[str] | None:
    ends = _RANGE.fullmatch(body)
    if ends is None:
        return body.split(",") if "," in body else None
    a, b = int(ends.group(1)), int(ends.group(2))
    padded = any(len(e.lstrip("-")) > 1 and e.lstrip("-").startswith("0") for e in ends.groups())
    width = max(len(e) for e in ends.groups()) if padded else 0
    step = 1 if b >= a else -1
    return [f"{k:0{width}d}" for k in range(a, b + step, step)]


def shard_paths(path: Path) -> list[Path]:
    """The shards ``path`` names: a folder's ``*.tar`` sorted by name, or a file or brace pattern's, in order."""
    if path.is_dir():
        shards = sorted(p for p in path.glob("*.tar") if p.is_file())
        if not shards:
            raise DatasetError("no *.tar shards in this folder", path)
        return shards
    shards = [Path(name) for name in expand_braces(str(path))]
    missing = next((p for p in shards if not p.is_file()), None)
    if missing is not None:
        raise DatasetError("no such shard", missing)
    return shards


def read_webdataset(path: Path, classes) -> Dataset:
    """WebDataset shards (the rules are in the module docstring).

    Args:
        path: a folder of ``*.tar`` shards, one shard, or a brace pattern of shards.
        classes: a class file or a list of names (checking the labels), or None: ``classes.txt``
            beside the first shard when there is one.

    Returns:
        The :class:`Dataset`, its samples in shard order, read when they are asked for.
    """
    shards = shard_paths(path)
    root = path if path.is_dir() else shards[0].parent
    if classes is None and (root / "classes.txt").is_file():
        classes = root / "classes.txt"
    table = load_class_table(classes) if classes is not None else None
    name = path.name if path.is_dir() else path.name.removesuffix(".tar")
    samples = LazySamples(_Shards(shards, table))
    return Dataset(
        name,
        "webdataset",
        root,
        samples,
        None if table is None else list(table.names),
        None if table is None else table.all_wnids,
    )


def _key_and_extension(name: str) -> tuple[str, str] | None:
    """WebDataset's split of a member name: up to the first ``.`` of its last component, and the rest."""
    folder, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    if not dot or not stem or (base.startswith("__") and stem.endswith("__")):
        return None
    return (f"{folder}/{stem}" if folder else stem), extension


class _Shards:
    """The samples of some shards, indexed from their member headers (a ``SampleSource``)."""

    def __init__(self, shards: list[Path], table: ClassTable | None) -> None:
        self.shards, self.table = shards, table
        self.keys: list[str] = []
        self.extensions: list[str] = []  # of each sample's image, as written (interned: a few distinct strings)
        self.where = array("q")  # _FIELDS numbers a sample
        for n, shard in enumerate(shards):
            self._index(n, shard)

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"{len(self.shards)} WebDataset shards from {self.shards[0]}"

    def _index(self, n: int, shard: Path) -> None:
        key: str | None = None
        members: dict[str, tuple[str, int, int]] = {}  # the current sample's: extension -> (as written, offset, size)
        try:
            with tarfile.open(shard, "r:") as tar:
                for info in tar:
                    split = _key_and_extension(info.name) if info.isreg() else None
                    if split is None:
                        continue
                    if split[0] != key:
                        if key is not None:
                            self._add(n, key, members)
                        key, members = split[0], {}
                    extension = split[1].lower()
                    if extension in members:
                        member = TarMember(shard, info.name, info.offset_data, info.size)
                        raise DatasetError(f"a second .{extension} member of sample {key!r}", member)
                    members[extension] = (split[1], info.offset_data, info.size)
        except tarfile.TarError as err:
            raise DatasetError(f"not a readable uncompressed tar archive ({err})", shard) from None
        if key is not None:
            self._add(n, key, members)

    def _add(self, n: int, key: str, members: dict[str, tuple[str, int, int]]) -> None:
        images = [e for e in members if e in _IMAGE_EXTENSIONS]
        if len(images) != 1:
            found = "no image" if not images else "two images (" + ", ".join(f".{e}" for e in images) + ")"
            raise DatasetError(f"sample {key!r} has {found}: it needs one .jpg, .png, ... member", self.shards[n])
        written, offset, size = members[images[0]]
        absent = ("", -1, 0)
        cls, record = members.get("cls", absent), members.get("json", absent)
        self.keys.append(key)
        self.extensions.append(sys.intern(written))
        self.where.extend((n, offset, size, cls[1], cls[2], record[1], record[2]))

    def read(self, i: int) -> Sample:
        """Sample ``i``, its ``cls`` and ``json`` members read and checked now."""
        n, offset, size, cls_at, cls_size, json_at, json_size = self.where[_FIELDS * i : _FIELDS * (i + 1)]
        shard, key = self.shards[n], self.keys[i]
        label = size_wh = None
        boxes: list[Box] = []
        if cls_at >= 0:
            member = TarMember(shard, f"{key}.cls", cls_at, cls_size)
            label = parse_int(_text(member).strip(), "the class index", member, 1)
        if json_at >= 0:
            member = TarMember(shard, f"{key}.json", json_at, json_size)
            label, size_wh, boxes = _read_json(member, label)
        if label is None:
            raise DatasetError('no label: neither a .cls member nor a "label" in a .json member', f"{shard}/{key}")
        check_label(label, self.table, f"{shard}/{key}", None)
        image = TarMember(shard, f"{key}.{self.extensions[i]}", offset, size)
        return Sample(key, image, label, tuple(boxes), size_wh)


def _text(member: TarMember) -> str:
    try:
        return member.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DatasetError("not valid UTF-8 text", member) from None
    except (OSError, EOFError) as err:
        raise DatasetError(f"cannot be read ({err})", member) from None


def _read_json(member: TarMember, cls: int | None) -> tuple[int | None, tuple[int, int] | None, list[Box]]:
    """(label, size, boxes) of a sample's ``json`` member; ``cls``: the label its ``cls`` member gave."""
    try:
        record = json.loads(_text(member))
    except json.JSONDecodeError as err:
        raise DatasetError(f"malformed JSON: {err.msg}", member, err.lineno) from None
    if not isinstance(record, dict):
        raise DatasetError(f"expected a JSON object, got {type(record).__name__}", member)

    def integer(key: str) -> int | None:
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise DatasetError(f'"{key}" is not an integer: {value!r}', member)
        return value

    label = integer("label")
    if label is not None and cls is not None and label != cls:
        raise DatasetError(f'"label" {label} disagrees with the .cls member ({cls})', member)
    width, height = integer("width"), integer("height")
    if (width is None) != (height is None):
        raise DatasetError('"width" and "height" come together', member)
    size = None if width is None or height is None else check_size(width, height, member, None)
    boxes = record.get("boxes", [])
    if not isinstance(boxes, list) or not all(
        isinstance(b, list) and len(b) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in b)
        for b in boxes
    ):
        raise DatasetError('"boxes" is not a list of [x0, y0, x1, y1] integer lists', member)
    for box in boxes:
        check_box(tuple(box), size, member, None)
    return (cls if label is None else label), size, [tuple(b) for b in boxes]
