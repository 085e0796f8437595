"""Datasets: five on-disk layouts of ground truth read into one list of :class:`Sample`, one reader per module.

Every box is ``(x0, y0, x1, y1)`` in inclusive, 0-based pixel coordinates of the image file itself
(see :mod:`camloc.boxes.box`). Metadata is checked while it is read; a problem raises a one-line
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
    the suffixes of :data:`camloc.utils.IMAGE_SUFFIXES` (any case), sorted by name; ``image_id`` is ``class/file``;
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

from typing import TYPE_CHECKING

from ..utils import lazy_exports

_EXPORTS = {
    "Dataset": ".base",
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
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ..errors import DatasetError as DatasetError
    from .base import Dataset as Dataset
    from .base import Sample as Sample
    from .boxes_csv import CSV_COLUMNS as CSV_COLUMNS
    from .boxes_csv import write_csv_dataset as write_csv_dataset
    from .classes import read_class_table as read_class_table
    from .cub import write_cub_dataset as write_cub_dataset
    from .registry import FORMATS as FORMATS
    from .registry import detect_format as detect_format
    from .registry import open_dataset as open_dataset
    from .registry import open_train_test as open_train_test
