"""Where the shared data lives: ``../shared/data`` beside the repository (never copied into it)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
VAL_BOXES = SHARED_DATA / "imagenet-val-boxes"
CUB_50 = SHARED_DATA / "cub-200-2011-50"


def cub_slice(root: Path, classes: int, train: int, test: int) -> Path:
    """A CUB-200-2011 folder at ``root`` with the first ``train`` / ``test`` images of the first ``classes`` classes.

    The images of ``../shared/data/cub-200-2011-50`` are linked, not copied; the metadata is
    rewritten for the slice (same boxes, labels and class names).
    """
    from camloc.datasets import open_dataset
    from camloc.datasets.cub import write_cub_dataset

    split = {}
    for name, per_class in (("train", train), ("test", test)):
        data = open_dataset(CUB_50, "cub", split=name)
        chosen = [s for c in range(classes) for s in [s for s in data if s.label == c][:per_class]]
        for s in chosen:
            link = root / "images" / s.image_id
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(s.path)
        split[name] = chosen
    return write_cub_dataset(split, root, data.class_names[:classes])
