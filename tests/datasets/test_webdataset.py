"""WebDataset shards: written by the webdataset package, read in place by camloc and checked against the
package's own reader; every layout and metadata error names the shard and member; the shared ImageNet images
evaluate the same from shards as from files."""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from braceexpand import braceexpand
from PIL import Image

import camloc
from camloc.cli import main
from camloc.datasets import DatasetError, LazySamples, open_dataset
from camloc.datasets.registry import detect_format
from camloc.datasets.webdataset import expand_braces
from camloc.evaluation.evaluate import evaluate
from camloc.images import Preprocess, load_batch, open_image
from camloc.utils import TarMember
from tests.helpers.data import VAL_BOXES


def _encoded(size: tuple[int, int], seed: int, kind: str) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, kind)
    return out.getvalue()


# (key, image extension, size, cls, json): what the webdataset package writes, and what camloc must read back
SAMPLES = [
    (
        "cat/0001",
        "jpg",
        (40, 30),
        2,
        {"label": 2, "boxes": [[0, 0, 39, 29], [5, 6, 10, 12]], "width": 40, "height": 30},
    ),
    ("cat/0002", "png", (16, 24), 0, None),
    ("dogs/0003", "jpeg", (20, 20), None, {"label": 1, "caption": "a dog", "boxes": []}),
    ("0004", "webp", (12, 8), 1, {"label": 1, "boxes": [[1, 1, 2, 2]]}),
    ("0005", "png", (9, 9), 2, {"width": 9, "height": 9, "url": "https://example.org/5.png"}),
]


def _write_shards(folder: Path, per_shard: int = 3) -> dict[str, bytes]:
    """The SAMPLES in shards of ``per_shard`` through webdataset's ShardWriter; returns each key's image bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    kinds = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
    with wds.ShardWriter(str(folder / "val-%03d.tar"), maxcount=per_shard, verbose=0) as sink:
        for n, (key, ext, size, cls, record) in enumerate(SAMPLES):
            images[key] = _encoded(size, n, kinds[ext])
            sample = {"__key__": key, ext: images[key], "txt": b"ignored"}
            if cls is not None:
                sample["cls"] = cls
            if record is not None:
                sample["json"] = record
            sink.write(sample)
    (folder / "classes.txt").write_text("0 n00000001 cat\n1 n00000002 dog\n2 n00000003 bird\n")
    return images


def test_shards_read_in_place_as_webdataset_writes_and_reads_them(tmp_path):
    images = _write_shards(tmp_path / "shards")
    shards = [tmp_path / "shards" / f"val-00{i}.tar" for i in (0, 1)]
    ds = open_dataset(tmp_path / "shards")
    assert (ds.name, ds.format, ds.root, len(ds)) == ("shards", "webdataset", tmp_path / "shards", 5)
    assert ds.class_names == ["cat", "dog", "bird"] and ds.class_wnids == ["n00000001", "n00000002", "n00000003"]
    assert isinstance(ds.samples, LazySamples)
    expected = [
        ("cat/0001", 2, ((0, 0, 39, 29), (5, 6, 10, 12)), (40, 30)),
        ("cat/0002", 0, (), None),
        ("dogs/0003", 1, (), None),
        ("0004", 1, ((1, 1, 2, 2),), None),
        ("0005", 2, (), (9, 9)),
    ]
    assert [(s.image_id, s.label, s.boxes, s.size) for s in ds] == expected
    for n, (s, (key, ext, size, _, _)) in enumerate(zip(ds, SAMPLES, strict=True)):
        assert isinstance(s.path, TarMember) and s.path.archive == shards[n // 3]
        assert str(s.path) == f"{shards[n // 3]}/{s.image_id}.{ext}"
        assert s.path.read_bytes() == images[key] and open_image(s.path).size == size

    # the webdataset package's own reader finds the same samples with the same bytes, in the same order
    theirs = list(wds.WebDataset([str(p) for p in shards], shardshuffle=False, empty_check=False))
    assert [t["__key__"] for t in theirs] == [s.image_id for s in ds]
    for t, s in zip(theirs, ds, strict=True):
        assert t[s.path.name.partition(".")[2]] == s.path.read_bytes()
        assert int(t["cls"]) == s.label if "cls" in t else json.loads(t["json"])["label"] == s.label

    # decoded through load_batch, a member gives the tensor its bytes give as a file
    for key, data in images.items():
        (tmp_path / "files" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "files" / key).write_bytes(data)
    pre = Preprocess(size=8, resize_size=8, mode="squash")
    batch = load_batch([s.path for s in ds], pre)
    assert batch.errors == [] and batch.paths == [str(s.path) for s in ds]
    assert torch.equal(batch.images, load_batch([tmp_path / "files" / k for k, *_ in SAMPLES], pre).images)

    # a brace pattern, one shard, auto-detection, slicing, reading everything at once
    pattern = tmp_path / "shards" / "val-{000..001}.tar"
    assert open_dataset(pattern).samples == ds.samples and open_dataset(pattern).name == "val-{000..001}"
    assert open_dataset(shards[1], "webdataset").samples == ds.samples[3:]
    assert [detect_format(p)[0] for p in (tmp_path / "shards", shards[0], pattern)] == ["webdataset"] * 3
    assert ds.samples[::2] == [ds[0], ds[2], ds[4]] and isinstance(ds.samples[::2], LazySamples)
    whole = open_dataset(tmp_path / "shards", lazy=False)
    assert isinstance(whole.samples, list) and whole.samples == ds.samples
    assert pickle.loads(pickle.dumps(ds.samples)) == ds.samples  # for worker processes
    assert open_dataset(tmp_path / "shards", classes=["a", "b", "c"]).class_names == ["a", "b", "c"]


def _tar(path: Path, members: list[tuple[str, bytes]], *, gzip: bool = False) -> Path:
    """A shard holding ``members`` (name, bytes), in order, written with the standard library."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz" if gzip else "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


PNG = _encoded((10, 8), 0, "PNG")


def _bad(tmp_path: Path, *members: tuple[str, bytes]) -> Path:
    return _tar(tmp_path / "bad" / "s.tar", [("a.png", PNG), ("a.cls", b"0"), *members])


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_layout_errors_name_the_shard_and_member_when_the_dataset_opens(tmp_path):
    cases = [
        ([("b.cls", b"1")], "sample 'b' has no image", "s.tar: "),
        ([("b.png", PNG), ("b.jpg", PNG)], "sample 'b' has two images (.png, .jpg)", "s.tar: "),
        ([("b.png", PNG), ("b.PNG", PNG)], "a second .png member of sample 'b'", "s.tar/b.PNG: "),
    ]
    for members, words, where in cases:
        with pytest.raises(DatasetError) as err:
            open_dataset(_bad(tmp_path, *members))
        assert words in _one_line(err) and where in str(err.value)
    gz = _tar(tmp_path / "gz" / "s.tar", [("a.png", PNG), ("a.cls", b"0")], gzip=True)
    with pytest.raises(DatasetError, match="s.tar: not a readable uncompressed tar archive"):
        open_dataset(gz)
    whole = _tar(tmp_path / "cut" / "s.tar", [("a.png", PNG), ("a.cls", b"0"), ("b.png", PNG), ("b.cls", b"1")])
    assert len(PNG) < 512  # each member: a 512-byte header, then its data padded to 512 bytes
    whole.write_bytes(whole.read_bytes()[: 2 * 1024 + 512 + 10])  # ends inside b.png's data
    with pytest.raises(DatasetError, match="s.tar: not a readable uncompressed tar archive .*unexpected end"):
        open_dataset(whole)
    _tar(tmp_path / "val-001.tar", [("a.png", PNG), ("a.cls", b"0")])
    with pytest.raises(DatasetError, match=r"val-002.tar: no such shard"):
        open_dataset(tmp_path / "val-{001..002}.tar")
    (tmp_path / "empty").mkdir()
    _tar(tmp_path / "empty" / "x.tar", [])
    assert len(open_dataset(tmp_path / "empty")) == 0  # a shard may hold no sample
    with pytest.raises(ValueError, match="images= does not apply to the webdataset format"):
        open_dataset(tmp_path / "empty", images=tmp_path)
    # skipped: a folder member, a name without a dot, WebDataset's metadata, other extensions
    shard = _tar(tmp_path / "skip" / "s.tar", [("__meta__.json", b"{}"), ("README", b"x"), ("a.png", PNG),
                                               ("a.cls", b"1"), ("a.seg.png", PNG), ("a.txt", b"x")])  # fmt: skip
    assert [(s.image_id, s.label, s.path.name) for s in open_dataset(shard)] == [("a", 1, "a.png")]


@pytest.mark.parametrize(
    ("member", "where", "words"),
    [
        (("b.cls", b"one"), "b.cls:1", "the class index is not an integer: 'one'"),
        (("b.json", b'{"label": 1,\n "boxes": [[0, 0, 5, 5]],}'), "b.json:2", "malformed JSON: "),
        (("b.json", b"[1, 2]"), "b.json", "expected a JSON object, got list"),
        (("b.json", b'{"label": "1"}'), "b.json", "\"label\" is not an integer: '1'"),
        (("b.json", b'{"label": 0, "boxes": [[0, 0, 5]]}'), "b.json", '"boxes" is not a list of [x0, y0, x1, y1]'),
        (("b.json", b'{"label": 0, "boxes": [[0, 0, 10, 5]], "width": 10, "height": 8}'), "b.json", "outside the 10x8"),
        (("b.json", b'{"label": 0, "boxes": [[4, 0, 3, 5]]}'), "b.json", "x1 < x0"),
        (("b.json", b'{"label": 0, "width": 10}'), "b.json", '"width" and "height" come together'),
        (("b.json", b'{"label": 0, "width": 0, "height": 3}'), "b.json", "image size 0x3 is not positive"),
        (("b.json", b"\xff"), "b.json", "not valid UTF-8 text"),
        (("b.json", b'{"label": 7}'), "b", "label 7 is outside 0..2"),  # the sample: shard/key
        (("b.json", b'{"boxes": []}'), "b", 'no label: neither a .cls member nor a "label"'),
    ],
)
def test_metadata_errors_name_the_member_and_line_when_the_sample_is_read(tmp_path, member, where, words):
    shard = _bad(tmp_path, ("b.png", PNG), member)
    (shard.parent / "classes.txt").write_text("cat\ndog\nbird\n")
    ds = open_dataset(shard.parent)  # the index reads headers only: no error yet
    assert ds[0].label == 0
    with pytest.raises(DatasetError) as err:
        ds[1]
    assert _one_line(err).startswith(f"{shard}/{where}: ") and words in str(err.value)
    with pytest.raises(DatasetError):
        open_dataset(shard.parent, lazy=False)  # reading all at once meets it at open


def test_cls_and_json_labels_must_agree(tmp_path):
    shard = _bad(tmp_path, ("b.png", PNG), ("b.cls", b"1"), ("b.json", b'{"label": 2}'))
    with pytest.raises(DatasetError, match=r"s.tar/b.json: \"label\" 2 disagrees with the .cls member \(1\)"):
        open_dataset(shard)[1]


def test_an_image_cut_short_is_a_bad_image_naming_shard_and_member(tmp_path):
    shard = _tar(tmp_path / "s.tar", [("a.png", PNG), ("a.cls", b"0"), ("b.png", PNG), ("b.cls", b"1")])
    paths = [s.path for s in open_dataset(shard)]
    shard.write_bytes(shard.read_bytes()[: paths[1].offset + 10])  # after indexing, the archive loses b.png's end
    batch = load_batch(paths, Preprocess(size=8, resize_size=8))
    assert batch.paths == [str(paths[0])] and len(batch.errors) == 1
    assert str(batch.errors[0]) == (
        f"{shard}/b.png: not a readable image (EOFError: the archive ends inside this member "
        f"(10 of its {len(PNG)} bytes are there))"
    )
    assert camloc.errors.BadImage is type(batch.errors[0])
    moved = TarMember(tmp_path / "gone.tar", "a.png", 0, 10)
    with pytest.raises(camloc.errors.BadImage, match=r"gone.tar/a.png: no such file"):
        open_image(moved)


@pytest.mark.parametrize(
    "pattern",
    [
        "s-{000..012}.tar",
        "s-{8..10}.tar",
        "s-{08..10}.tar",
        "s-{8..010}",
        "{a,b}-{1..3}",
        "x{5..2}y",
        "{-02..2}",
        "plain.tar",
        "a{b}c",
        "{1..3}{x,y,z}",
        "{,a}b",
        "{0..0}",
    ],  # fmt: skip
)
def test_brace_patterns_expand_as_braceexpand_does(pattern):
    assert expand_braces(pattern) == list(braceexpand(pattern))


# --------------------------------------------------------------------------------------------
# the shared ImageNet images, as files and as shards


@pytest.mark.slow
def test_shared_images_evaluate_the_same_from_shards_as_from_files(mobilenet, val_boxes, tmp_path, capsys):
    files = dataclasses.replace(open_dataset(VAL_BOXES), samples=open_dataset(VAL_BOXES).samples[:24])
    shards = tmp_path / "shards"
    shards.mkdir()
    with wds.ShardWriter(str(shards / "val-%02d.tar"), maxcount=10, verbose=0) as sink:
        for s in files:
            w, h = s.size
            record = {"label": s.label, "boxes": [list(b) for b in s.boxes], "width": w, "height": h}
            sink.write({"__key__": Path(s.image_id).stem, "jpg": s.path.read_bytes(), "json": record})
    (shards / "classes.txt").write_text((VAL_BOXES / "classes.txt").read_text())
    packed = open_dataset(shards)
    assert len(packed) == 24 and packed.class_names == files.class_names
    assert [(s.image_id + ".JPEG", s.label, s.boxes, s.size) for s in packed] == [
        (s.image_id, s.label, s.boxes, s.size) for s in files
    ]
    cam, pre = camloc.CAM(mobilenet), camloc.model_info(mobilenet).preprocess
    from_files = evaluate(files, cam, pre, batch_size=8, progress=False)
    from_shards = evaluate(packed, cam, pre, batch_size=8, progress=False)
    assert from_shards.summary == from_files.summary and from_shards.curves == from_files.curves

    # the command line takes a brace pattern; an image member that does not decode is listed by shard and member
    last = open_dataset(shards / "val-02.tar")[-1].path
    with open(last.archive, "r+b") as f:
        f.seek(last.offset)
        f.write(bytes(last.size))  # zeros: no image format
    status = main(["evaluate", str(shards / "val-{00..02}.tar"), "--format", "webdataset",
                   "--json", str(tmp_path / "r.json"), "--batch-size", "8"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and f"{last}" in err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["images"] == 23 and [s["path"] for s in result["skipped"]] == [str(last)]
