"""Datasets: five on-disk layouts of ground truth read into one list of :class:`Sample`, one reader per module.

Every box is ``(x0, y0, x1, y1)`` in inclusive, 0-based pixel coordinates of the image file itself
(see :mod:`camloc.box`). Metadata is checked while it is read; a problem raises a one-line
:class:`DatasetError` that names the file and, where there is one, the 1-based line. Image files are
*not* opened at read time (a missing or unreadable image is the evaluator's business), except that
CUB reads image headers to clip its boxes (see :mod:`camloc.datasets.cub`).

Formats (``open_dataset(path, format=...)``), each read by its own module, whose docstring gives
the rules:

- ``csv`` (:mod:`camloc.datasets.boxes_csv`): ``boxes.csv`` + ``images/`` (+ ``classes.txt``), one
  row per box; camloc's own layout, written by :func:`write_csv_dataset`.
- ``wsol`` (:mod:`camloc.datasets.wsol`): wsolevaluation's metadata folders (boxes, or OpenImages masks).
- ``cub`` (:mod:`camloc.datasets.cub`): CUB-200-2011 as distributed, with wsolevaluation's box rule;
  written by :func:`write_cub_dataset`.
- ``voc`` (:mod:`camloc.datasets.voc`): Pascal VOC / ILSVRC XML annotations with a class table.
- ``folder`` (:mod:`camloc.datasets.folder`): torchvision's ImageFolder, labels only.
- ``webdataset`` (:mod:`camloc.datasets.webdataset`): WebDataset tar shards (images with ``cls`` and/or
  ``json`` labels and boxes), read in place.
- ``auto``: detected from the files present (:func:`detect_format`): ``boxes.csv`` -> csv,
  ``image_ids.txt`` -> wsol, ``images.txt`` + ``bounding_boxes.txt`` -> cub, ``*.xml`` -> voc,
  ``*.tar`` (or a ``.tar`` file, or a brace pattern) -> webdataset; last, folder, when a subfolder
  holds images and nothing of the other layouts is there.

Large datasets are read lazily (:class:`LazySamples`: each sample read when it is asked for):
voc from 10,000 XML files on (the ILSVRC validation set's 50,000), and webdataset shards; see
docs/large-datasets.md.

Procedurally drawn datasets with exact boxes (written in the csv or cub layout) come from
:mod:`camloc.datasets.synthetic`.

Class tables (``classes.txt`` of the csv layout, ``classes=`` of any format) are read by one rule:
when every line is ``INDEX REST`` the indices must run 0..n-1 and REST is ``WNID NAME`` (WNID like
``n01440764``), a bare WNID, or a NAME (which may contain spaces and commas); otherwise each line, in
index order, is ``WNID [NAME]`` (e.g. ImageNet's ``LOC_synset_mapping.txt``) or a bare name.
"""

from typing import TYPE_CHECKING

from ..utils import lazy_exports

_EXPORTS = {
    "Dataset": ".base",
    "LazySamples": ".base",
    "Sample": ".base",
    "DatasetError": "..errors",
    "FORMATS": ".registry",
    "detect_format": ".registry",
    "open_dataset": ".registry",
    "open_train_test": ".registry",
    "read_class_table": ".classes",
    "CSV_COLUMNS": ".boxes_csv",
    "write_csv_dataset": ".boxes_csv",
    "write_cub_dataset": ".cub",
    "BOX_FORMATS": ".registry",
    "open_writers": ".registry",
    "BoxWriter": ".labels",
    "Detection": ".labels",
    "ImageBoxes": ".labels",
    "CocoWriter": ".coco",
    "VocWriter": ".voc",
    "YoloWriter": ".yolo",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ..errors import DatasetError as DatasetError
    from .base import Dataset as Dataset
    from .base import LazySamples as LazySamples
    from .base import Sample as Sample
    from .boxes_csv import CSV_COLUMNS as CSV_COLUMNS
    from .boxes_csv import write_csv_dataset as write_csv_dataset
    from .classes import read_class_table as read_class_table
    from .coco import CocoWriter as CocoWriter
    from .cub import write_cub_dataset as write_cub_dataset
    from .labels import BoxWriter as BoxWriter
    from .labels import Detection as Detection
    from .labels import ImageBoxes as ImageBoxes
    from .registry import BOX_FORMATS as BOX_FORMATS
    from .registry import FORMATS as FORMATS
    from .registry import detect_format as detect_format
    from .registry import open_dataset as open_dataset
    from .registry import open_train_test as open_train_test
    from .registry import open_writers as open_writers
    from .voc import VocWriter as VocWriter
    from .yolo import YoloWriter as YoloWriter
