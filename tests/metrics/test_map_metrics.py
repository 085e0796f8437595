"""``camloc metrics``: per-image rows, dataset means from them, resume and torchrun give the same files.

The model is the identity CAM of tests/helpers/models.py (class 0's CAM is the red channel) on
images whose red object sits inside its box, so CAM's pointing game must hit every time.
"""

import csv
import json
import math
import shutil

import pytest

from camloc.cli import main
from tests.evaluation.test_distributed import MODELS, PLAIN_ARGS, _camloc, _data

KEYS = ("pointing_game", "pointing_game_tolerant", "energy_pointing_game", "relevance_mass", "relevance_rank")
ROAD = ("road_morf", "road_lerf", "road_combined")


def _args(data, rows, results, *extra):
    return ["metrics", str(data), "--model", f"{MODELS}:identity_cam", *PLAIN_ARGS, "--methods", "cam,gradcam",
            "--per-image", str(rows), "--json", str(results), "--road-percentiles", "30,70", *extra]  # fmt: skip


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_means_and_the_pointing_game_on_known_objects(tmp_path, capsys):
    data = _data(tmp_path)
    rows_path, results_path = tmp_path / "rows.csv", tmp_path / "r.json"
    assert main(_args(data, rows_path, results_path)) == 1  # one unreadable file
    captured = capsys.readouterr()
    assert "1 image(s) could not be read" in captured.err and "ROAD costs 5 forward passes" in captured.err
    rows = _rows(rows_path)
    assert len(rows) == 13 and rows[0]["image_id"] == "00.png"
    assert list(rows[0]) == ["image_id", "label", "class"] + [
        f"{m}.{k}" for m in ("cam", "gradcam") for k in KEYS + ROAD
    ]
    result = json.loads(results_path.read_text())
    assert result["target"] == "label" and result["tolerance"] == 15 and result["road_percentiles"] == [30, 70]
    assert [s["image_id"] for s in result["skipped"]] == ["zz.png"]
    for method in ("cam", "gradcam"):
        summary = result["methods"][method]
        assert summary["images"] == 13
        for key in KEYS + ROAD:
            values = [float(r[f"{method}.{key}"]) for r in rows if r[f"{method}.{key}"]]
            assert summary[key] == pytest.approx(sum(values) / len(values), rel=1e-12), (method, key)
    cam = result["methods"]["cam"]
    assert cam["pointing_game"] == 1.0 and cam["pointing_game_tolerant"] == 1.0
    assert 0 < cam["energy_pointing_game"] < 1 and 0 < cam["relevance_rank"] <= 1
    # the map's top pixels are the object's: removing them first (MoRF) costs more than removing the rest
    assert cam["road_morf"] < cam["road_lerf"] and cam["road_combined"] > 0
    assert all(math.isfinite(float(r["cam.road_combined"])) for r in rows)
    assert "| cam | 13 |" in captured.out


def test_a_resumed_run_gives_the_same_rows_and_means(tmp_path, capsys):
    data = _data(tmp_path)
    assert main(_args(data, tmp_path / "ref.csv", tmp_path / "ref.json")) == 1
    rows = tmp_path / "rows.csv"
    lines = (tmp_path / "ref.csv").read_text().splitlines(keepends=True)
    rows.write_text("".join(lines[:5]) + lines[5][:20])  # four images done, a fifth cut off by the kill
    shutil.copy(tmp_path / "ref.csv.json", tmp_path / "rows.csv.json")
    assert main(_args(data, rows, tmp_path / "r.json")) == 2  # without --resume it refuses to write over the run
    assert "rows.csv: exists; pass --resume to continue" in capsys.readouterr().err
    assert main(_args(data, rows, tmp_path / "r.json", "--resume")) == 1
    assert rows.read_bytes() == (tmp_path / "ref.csv").read_bytes()
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("ref.json", "r.json"))
    assert one["methods"] == two["methods"] and one["images"] == two["images"] == 13


@pytest.mark.slow
def test_two_processes_give_one_process_files(tmp_path):
    data = _data(tmp_path)
    for ranks in (1, 2):
        args = _args(data, tmp_path / f"rows{ranks}.csv", tmp_path / f"r{ranks}.json", "--no-road")[1:]
        done = _camloc("metrics", *args, ranks=ranks)
        assert done.returncode == 1 and "1 image(s) could not be read" in done.stderr, done.stderr
    assert (tmp_path / "rows1.csv").read_bytes() == (tmp_path / "rows2.csv").read_bytes()
    one, two = (json.loads((tmp_path / f"r{n}.json").read_text()) for n in (1, 2))
    assert one["methods"] == two["methods"] and one["images"] == 13
