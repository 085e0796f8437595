"""Readers never crash: any content of an annotation file gives a dataset or a one-line CamlocError, nothing else.

The valid datasets are ``camloc synth``'s CSV layout, what ``camloc boxes`` writes of it (COCO, Pascal VOC,
YOLO), its CUB-200-2011 and wsolevaluation metadata, and WebDataset shards; one annotation file is then
replaced by what hypothesis draws — arbitrary bytes, the file cut anywhere, the file with a few pieces
changed to huge or negative numbers, other separators, non-UTF-8 bytes or empty fields — and the dataset is
opened and read. The draws are derandomized (the same cases on every run; ``CAMLOC_FUZZ_CASES=N`` for
more than 30 a file).
"""

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camloc.datasets import open_dataset
from camloc.datasets.cub import write_cub_dataset
from camloc.errors import CamlocError
from tests.faults.conftest import NET, camloc
from tests.helpers.annotations import write_shards


@pytest.fixture(scope="module")
def layouts(synth, tmp_path_factory) -> Path:
    """A folder with ``csv/`` (synth's test set) and ``out/{coco,voc,yolo}`` (boxes' export of it)."""
    root = tmp_path_factory.mktemp("layouts")
    shutil.copytree(synth / "test", root / "csv")
    done = camloc("boxes", root / "csv", "--out", "out", "--format", "coco,voc,yolo", "--images-as", "copy",
                  "--val-fraction", "0", *NET, cwd=root)  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = open_dataset(root / "csv", "csv")
    shutil.copytree(root / "csv" / "images", root / "cub" / "images")
    write_cub_dataset({"test": data.samples[:6], "train": data.samples[6:]}, root / "cub", data.class_names)
    meta = root / "wsol"
    meta.mkdir()
    ids = [s.image_id for s in data.samples]
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{s.image_id},{s.label}\n" for s in data.samples))
    (meta / "image_sizes.txt").write_text("".join(f"{i},32,32\n" for i in ids))
    (meta / "localization.txt").write_text(
        "".join(f"{s.image_id},{','.join(map(str, b))}\n" for s in data.samples for b in s.boxes)
    )
    write_shards(root / "wds", 6, 3, (root / "csv" / "images" / ids[0]).read_bytes())
    return root


# (format, the dataset's folder in the layouts, the dataset in it, the annotation file fuzzed in it)
READERS = [
    ("csv", "csv", ".", "boxes.csv"),
    ("csv", "csv", ".", "classes.txt"),
    ("coco", "out/coco", "annotations.json", "annotations.json"),
    ("voc", "out/voc", "VOCdevkit/VOC2012", "VOCdevkit/VOC2012/Annotations/00003.xml"),
    ("yolo", "out/yolo", ".", "labels/train/00003.txt"),
    ("yolo", "out/yolo", ".", "data.yaml"),
    ("cub", "cub", ".", "bounding_boxes.txt"),
    ("cub", "cub", ".", "images.txt"),
    ("cub", "cub", ".", "train_test_split.txt"),
    ("wsol", "wsol", ".", "localization.txt"),
    ("wsol", "wsol", ".", "class_labels.txt"),
    ("wsol", "wsol", ".", "image_sizes.txt"),
    ("webdataset", "wds", ".", "val-000000.tar"),
]


PIECES = [
    b"-9e99",
    b"1e309",
    b"-1",
    b"nan",
    b"",
    b",",
    b";",
    b"\t",
    b" ",
    b"\n",
    b"\xff\xfe",
    b'"',
    b"<",
    b"}",
    b"0x1f",
]


@st.composite
def _contents(draw, original: bytes) -> bytes:
    """Arbitrary bytes, the file cut anywhere, or the file with a few pieces replaced."""
    kind = draw(st.sampled_from(["arbitrary", "cut", "edited"]))
    if kind == "arbitrary":
        return draw(st.binary(max_size=300))
    if kind == "cut":
        return original[: draw(st.integers(0, len(original)))]
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        width = draw(st.integers(0, 6))
        data[at : at + width] = draw(st.sampled_from(PIECES) | st.binary(max_size=4))
    return bytes(data)


def _read_or_one_line_error(work: Path, format: str, dataset: str, target: str, images: Path | None) -> None:
    try:
        data = open_dataset(work / dataset, format, images=images)
        for sample in data.samples:
            assert all(len(box) == 4 for box in (sample.boxes or []))
    except CamlocError as err:
        message = str(err)
        assert "\n" not in message and message
        assert str(work) in message or Path(target).name in message, message


@pytest.mark.parametrize(
    ("format", "root", "dataset", "target"), READERS, ids=[f"{r[0]}-{Path(r[3]).name}" for r in READERS]
)
def test_any_annotation_content_gives_a_dataset_or_a_one_line_error(layouts, tmp_path, format, root, dataset, target):
    original = (layouts / root / target).read_bytes()
    work = tmp_path / "w"
    images = layouts / "csv" / "images" if format == "wsol" else None
    cases = int(os.environ.get("CAMLOC_FUZZ_CASES", "30"))

    @settings(max_examples=cases, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(content=_contents(original))
    def read(content: bytes) -> None:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(layouts / root, work, symlinks=True)
        (work / target).write_bytes(content)
        _read_or_one_line_error(work, format, dataset, target, images)

    read()


@pytest.fixture(scope="module")
def broken(synth, tmp_path_factory) -> Path:
    """synth's test set with three images broken: cut half-way, empty, and text named .png."""
    root = tmp_path_factory.mktemp("broken") / "test"
    shutil.copytree(synth / "test", root)
    images = sorted((root / "images").iterdir())
    images[1].write_bytes(images[1].read_bytes()[:60])
    images[4].write_bytes(b"")
    images[7].write_text("not a picture")
    return root


BROKEN = ["00001.png", "00004.png", "00007.png"]


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "{data}", "--out", "{tmp}/e"],
        ["boxes", "{data}", "--out", "{tmp}/b", "--format", "coco,voc,yolo"],
        ["explain", "{data}/images", "--out", "{tmp}/x"],
        ["features", "{data}", "--out", "{tmp}/f.npz"],
        ["metrics", "{data}", "--json", "{tmp}/m.json", "--no-road"],
        ["faithfulness", "{data}", "--out", "{tmp}/faith", "--steps", "4"],
    ],
    ids=lambda argv: argv[0],
)
def test_broken_images_are_listed_and_the_run_goes_on(broken, tmp_path, capsys, argv):
    from camloc.cli import main

    assert main([a.format(data=broken, tmp=tmp_path) for a in argv] + NET) == 1  # done, some files unreadable
    err = capsys.readouterr().err
    assert "Traceback" not in err
    listed = [line.strip() for line in err.splitlines() if line.startswith("  ")]
    assert len(listed) == 3 and all(any(name in line for line in listed) for name in BROKEN), err
