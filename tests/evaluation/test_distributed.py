"""Runs split over processes (torchrun, gloo on the CPU) give a single process's results; the overlapped
pipeline gives the serial one's; a rank killed half-way resumes to the same files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import camloc
from camloc.datasets import open_dataset
from camloc.evaluation.evaluate import evaluate
from camloc.evaluation.weak_labels import boxes_for
from camloc.metrics.localization import LocalizationMetrics
from camloc.models.info import ModelInfo
from tests.evaluation.test_weak_labels import PLAIN, _objects
from tests.helpers.data import ROOT
from tests.helpers.models import identity_cam

MODELS = ROOT / "tests" / "helpers" / "models.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT), "OMP_NUM_THREADS": "1"}
PLAIN_ARGS = ["--size", "32", "--mean", "0,0,0", "--std", "1,1,1", "--batch-size", "3", "--workers", "1"]


def _data(tmp_path: Path, n: int = 13) -> Path:
    """Hand-made images with objects, plus a file that is not an image."""
    root = _objects(tmp_path / "d", n=n, size=(32, 32))
    (root / "images" / "zz.png").write_text("not an image")
    with open(root / "boxes.csv", "a") as f:
        f.write("zz.png,32,32,0,object,1,1,5,5\n")
    return root


def _camloc(*args: str, ranks: int = 1, env: dict | None = None) -> subprocess.CompletedProcess:
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks > 1 else []
    return subprocess.run(
        [sys.executable, *launch, "-m", "camloc", *args], capture_output=True, text=True, env=env or ENV, timeout=600
    )


def _without_paths(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("per_image", "arguments")}


def test_shards_merged_equal_one_pass():
    rng = np.random.default_rng(0)
    from camloc.metrics.localization import ImageOutcome

    outcomes = [
        ImageOutcome(
            bool(a),
            bool(b),
            bool(c),
            bool(c and a),
            bool(c and b),
            {k: rng.random(20) > 0.5 for k in ("v1_50", "v2_30", "v2_50", "v2_70")},
            (rng.integers(0, 9, 22), rng.integers(0, 9, 22)),
        )  # fmt: skip
        for a, b, c in rng.random((30, 3)) > 0.4
    ]
    whole, parts = (
        LocalizationMetrics(np.arange(0, 1, 0.05)),
        [LocalizationMetrics(np.arange(0, 1, 0.05)) for _ in range(3)],
    )
    for k, outcome in enumerate(outcomes):
        whole.update(outcome)
        parts[k % 3].update(outcome)
    parts[0].merge(parts[1])
    parts[0].merge(parts[2])
    assert parts[0].compute() == whole.compute() and parts[0].accuracy_curves() == whole.accuracy_curves()
    whole.reset()
    assert whole.compute()["images"] == 0 and whole.compute()["pxap"] is None


def test_the_overlapped_pipeline_gives_the_serial_results(tmp_path):
    data = open_dataset(_data(tmp_path))
    method, info = camloc.CAM(identity_cam()), ModelInfo("identity", ("object", "other"), PLAIN)
    rows = {}
    for overlap in (False, True):
        rows[overlap] = tmp_path / f"rows{overlap}.csv"
        result = evaluate(data, method, PLAIN, batch_size=3, per_image=rows[overlap], overlap=overlap, progress=False)
        assert result.summary["images"] == 13 and [s["image_id"] for s in result.skipped] == ["zz.png"]
    assert rows[False].read_bytes() == rows[True].read_bytes()
    full = PLAIN.with_mode("full")
    serial = boxes_for(data, method, info=info, preprocess=full, batch_size=3)
    assert serial == boxes_for(data, method, info=info, preprocess=full, batch_size=5)


@pytest.mark.slow
def test_two_processes_give_one_process_results(tmp_path):
    data = _data(tmp_path)
    model = ["--model", f"{MODELS}:identity_cam", *PLAIN_ARGS]
    for ranks in (1, 2):
        done = _camloc("evaluate", str(data), "--per-image", str(tmp_path / f"rows{ranks}.csv"), "--json",
                       str(tmp_path / f"r{ranks}.json"), *model, ranks=ranks)  # fmt: skip
        assert done.returncode == 1, done.stderr  # the unreadable file: exit status 1
        assert "1 image(s) could not be read" in done.stderr
        done = _camloc("boxes", str(data), "--out", str(tmp_path / f"boxes{ranks}"), "--format", "coco,voc,yolo",
                       "--resize", "squash", *model, ranks=ranks)  # fmt: skip
        assert "1 image(s) could not be read" in done.stderr
    one, two = (json.loads((tmp_path / f"r{n}.json").read_text()) for n in (1, 2))
    assert _without_paths(one) == _without_paths(two) and one["images"] == 13
    assert (tmp_path / "rows1.csv").read_bytes() == (tmp_path / "rows2.csv").read_bytes()
    assert not list(tmp_path.glob("rows2.csv.rank*"))  # the ranks' journals were merged, then removed
    for name in (
        "coco/annotations.json",
        "coco/results.json",
        "coco/ground_truth.json",
        "journal.jsonl",
        "coco/train.json",
        "coco/val.json",
        "voc/VOCdevkit/VOC2012/ImageSets/Main/trainval.txt",
        "voc/VOCdevkit/VOC2012/ImageSets/Main/val.txt",
        "yolo/data.yaml",
    ):
        assert (tmp_path / "boxes1" / name).read_bytes() == (tmp_path / "boxes2" / name).read_bytes(), name
    for folder in ("voc/VOCdevkit/VOC2012/Annotations", "yolo/labels"):  # yolo: train/NAME.txt and val/NAME.txt
        files = sorted(
            str(p.relative_to(tmp_path / "boxes1" / folder)) for p in (tmp_path / "boxes1" / folder).rglob("*.txt")
        )
        files += sorted(p.name for p in (tmp_path / "boxes1" / folder).glob("*.xml"))
        theirs = [str(p.relative_to(tmp_path / "boxes2" / folder)) for p in (tmp_path / "boxes2" / folder).rglob("*.*")]
        assert len(files) == 13 and files == sorted(theirs)
        assert all(
            (tmp_path / "boxes1" / folder / f).read_bytes() == (tmp_path / "boxes2" / folder / f).read_bytes()
            for f in files
        )
    s1, s2 = (json.loads((tmp_path / f"boxes{n}" / "summary.json").read_text()) for n in (1, 2))
    assert {k: v for k, v in s1.items() if k != "files"} == {k: v for k, v in s2.items() if k != "files"}


@pytest.mark.slow
def test_a_rank_killed_half_way_resumes_to_the_same_files(tmp_path):
    data = _data(tmp_path, n=20)
    dying = ["--model", f"{MODELS}:dying_identity_cam", *PLAIN_ARGS]  # dies only where CAMLOC_TEST_DIE_RANK says
    _camloc(
        "evaluate", str(data), "--per-image", str(tmp_path / "ref.csv"), "--json", str(tmp_path / "ref.json"), *dying
    )
    rows, results = tmp_path / "rows.csv", tmp_path / "r.json"
    killed = _camloc("evaluate", str(data), "--per-image", str(rows), "--json", str(results), *dying, ranks=2,
                     env={**ENV, "CAMLOC_TEST_DIE_RANK": "1"})  # fmt: skip
    assert killed.returncode != 0 and not results.exists()
    journals = sorted(tmp_path.glob("rows.csv.rank*-of-2"))
    assert len(journals) == 2 and 0 < sum(p.read_text().count("\n") - 1 for p in journals) < 21  # less the column names
    done = _camloc("evaluate", str(data), "--per-image", str(rows), "--json", str(results), "--resume", *dying, ranks=2)
    assert done.returncode == 1, done.stderr  # finished; the unreadable file gives exit status 1
    assert rows.read_bytes() == (tmp_path / "ref.csv").read_bytes()
    assert _without_paths(json.loads(results.read_text())) == _without_paths(
        json.loads((tmp_path / "ref.json").read_text())
    )


@pytest.mark.slow
def test_explain_features_and_faithfulness_split_over_two_processes(tmp_path):
    data = _data(tmp_path)
    model = ["--model", f"{MODELS}:identity_cam", *PLAIN_ARGS[:-2]]  # explain takes no --workers
    for ranks in (1, 2):
        out = tmp_path / f"run{ranks}"
        done = _camloc(
            "explain", str(data / "images"), "--out", str(out / "explain"), "--topk", "2", *model, ranks=ranks
        )
        assert done.returncode == 1 and "1 file(s) could not be read" in done.stderr, done.stderr
        done = _camloc("features", str(data), "--out", str(out / "f.npz"), *model, ranks=ranks)
        assert "1 image(s) could not be read" in done.stderr, done.stderr
        done = _camloc("faithfulness", str(data), "--methods", "cam,gradcam", "--steps", "4", "--out",
                       str(out / "faith.md"), *model, ranks=ranks)  # fmt: skip
        assert "1 image(s) could not be read" in done.stderr, done.stderr
    one, two = (json.loads((tmp_path / f"run{n}" / "explain" / "results.json").read_text()) for n in (1, 2))
    assert [r["path"] for r in one["images"]] == [r["path"] for r in two["images"]] and len(one["images"]) == 13
    strip = lambda r: {k: v for k, v in r.items() if k != "grid"}  # noqa: E731 - grids live in each run's folder
    assert [strip(r) for r in one["images"]] == [strip(r) for r in two["images"]] and one["errors"] == two["errors"]
    assert sorted(p.name for p in (tmp_path / "run2" / "explain").glob("*.png")) == sorted(
        p.name for p in (tmp_path / "run1" / "explain").glob("*.png")
    )
    assert not list((tmp_path / "run2" / "explain").glob("results.json.rank*"))
    f1, f2 = (np.load(tmp_path / f"run{n}" / "f.npz") for n in (1, 2))
    assert np.array_equal(f1["values"], f2["values"]) and np.array_equal(f1["labels"], f2["labels"])
    assert list(f1["image_ids"]) == list(f2["image_ids"]) and len(f1["labels"]) == 13
    r1, r2 = (json.loads((tmp_path / f"run{n}" / "faith.json").read_text()) for n in (1, 2))
    assert r1["methods"].keys() == r2["methods"].keys() == {"cam", "gradcam"}
    for method, row in r1["methods"].items():
        assert row == pytest.approx(r2["methods"][method], rel=1e-12)
    assert r1["skipped"] == r2["skipped"]
