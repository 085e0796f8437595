"""Large annotation sets written on the fly: the ILSVRC validation layout's XML files, and WebDataset shards."""

from __future__ import annotations

import os
from pathlib import Path

WNIDS = [f"n{10_000_000 + k:08d}" for k in range(1000)]


def write_ilsvrc_annotations(folder: Path, count: int, image: Path | None = None) -> Path:
    """``count`` ILSVRC-style XML files in ``folder`` and ``LOC_synset_mapping.txt`` beside it.

    File ``i`` (1-based, ``ILSVRC2012_val_%08d.xml``) holds one object of class ``i % 1000`` with the box
    ``(i % 97, 20, 300, 200)`` in a 500 x 375 image; its ``<filename>`` has no extension, as ILSVRC's. With
    ``image``, ``folder`` also gets a symbolic link ``<stem>.JPEG`` to it per file.
    """
    folder.mkdir(parents=True)
    (folder.parent / "LOC_synset_mapping.txt").write_text("".join(f"{w} class {k}\n" for k, w in enumerate(WNIDS)))
    for i in range(1, count + 1):
        stem = f"ILSVRC2012_val_{i:08d}"
        (folder / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}</filename><size><width>500</width><height>375</height></size>"
            f"<object><name>{WNIDS[i % 1000]}</name><bndbox><xmin>{i % 97}</xmin><ymin>20</ymin>"
            "<xmax>300</xmax><ymax>200</ymax></bndbox></object></annotation>\n"
        )
        if image is not None:
            os.symlink(image, folder / f"{stem}.JPEG")
    return folder


def write_shards(folder: Path, count: int, per_shard: int, image: bytes) -> list[Path]:
    """The same ``count`` samples as :func:`write_ilsvrc_annotations` as WebDataset shards (jpg, cls, json).

    Written by the webdataset package's ShardWriter, ``per_shard`` samples a shard, ``val-%06d.tar``.
    """
    import webdataset as wds

    folder.mkdir(parents=True)
    with wds.ShardWriter(str(folder / "val-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i in range(1, count + 1):
            record = {"label": i % 1000, "boxes": [[i % 97, 20, 300, 200]], "width": 500, "height": 375}
            sink.write({"__key__": f"ILSVRC2012_val_{i:08d}", "jpg": image, "cls": i % 1000, "json": record})
    return sorted(folder.glob("*.tar"))
