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


# --------------------------------------------------------------------------------------------
# camloc sanity: the same harness, a JSON-lines journal


def _sanity_args(data, out, *extra):
    return ["sanity", str(data), "--model", f"{MODELS}:identity_cam", *PLAIN_ARGS, "--size", "48",
            "--methods", "cam,gradcam", "--out", str(out), *extra]  # fmt: skip


def _journal(path):
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_sanity_writes_the_means_of_its_journal_and_the_figure(tmp_path, capsys):
    data = _data(tmp_path)
    out = tmp_path / "out"
    args = _sanity_args(data, out, "--random-labels-model", f"{MODELS}:identity_cam")
    assert main(args) == 1  # one unreadable file
    captured = capsys.readouterr()
    assert "1 image(s) could not be read" in captured.err and "cascading randomisation" in captured.out
    result = json.loads((out / "sanity.json").read_text())
    assert result["kind"] == "sanity" and result["layers"] == ["fc", "features"] and result["images"] == 13
    assert list(result["results"]) == ["cascading", "independent", "data_randomisation"]
    assert (out / "sanity.png").read_bytes()[:4] == b"\x89PNG"
    rows = _journal(out / "per-image.jsonl")
    assert [r["image_id"] for r in rows][:2] == ["00.png", "01.png"] and len(rows) == 13
    for order in ("cascading", "independent"):
        for method in ("cam", "gradcam"):
            for layer in ("fc", "features"):
                for k, key in enumerate(("spearman_abs", "spearman", "ssim", "hog")):
                    values = [r[order][method][layer][k] for r in rows if r[order][method][layer][k] is not None]
                    got = result["results"][order][method][layer][key]
                    assert got == (pytest.approx(sum(values) / len(values), rel=1e-12) if values else None)
    # class c's CAM is +-(red channel): a re-drawn one-input head only scales it, so its absolute ranks stay
    assert result["results"]["cascading"]["cam"]["fc"]["spearman_abs"] == pytest.approx(1.0)
    assert abs(result["results"]["cascading"]["cam"]["fc"]["spearman"]) == pytest.approx(1.0)
    # a re-drawn negative head weight leaves Grad-CAM's ReLU'd map all zeros: no rank correlation (None), an SSIM
    assert result["results"]["cascading"]["gradcam"]["fc"]["spearman"] is None
    assert result["results"]["cascading"]["gradcam"]["fc"]["ssim"] is not None
    # the same model as the random-label one: the same maps
    for method in ("cam", "gradcam"):
        assert result["results"]["data_randomisation"][method]["spearman"] == pytest.approx(1.0)


def test_a_resumed_sanity_run_gives_the_same_journal_and_means(tmp_path, capsys):
    data = _data(tmp_path)
    assert main(_sanity_args(data, tmp_path / "ref", "--orders", "cascading")) == 1
    out = tmp_path / "out"
    out.mkdir()
    lines = (tmp_path / "ref" / "per-image.jsonl").read_text().splitlines(keepends=True)
    (out / "per-image.jsonl").write_text("".join(lines[:5]) + lines[5][:30])  # four images done, one cut off
    assert main(_sanity_args(data, out, "--orders", "cascading")) == 2
    assert "per-image.jsonl: exists; pass --resume" in capsys.readouterr().err
    assert main(_sanity_args(data, out, "--orders", "cascading", "--resume")) == 1
    assert (out / "per-image.jsonl").read_bytes() == (tmp_path / "ref" / "per-image.jsonl").read_bytes()
    one, two = (json.loads((d / "sanity.json").read_text()) for d in (tmp_path / "ref", out))
    assert one["results"] == two["results"] and one["images"] == two["images"] == 13


@pytest.mark.slow
def test_sanity_in_two_processes_gives_one_process_files(tmp_path):
    data = _data(tmp_path)
    for ranks in (1, 2):
        args = _sanity_args(data, tmp_path / f"out{ranks}", "--orders", "independent")[1:]
        done = _camloc("sanity", *args, ranks=ranks)
        assert done.returncode == 1 and "1 image(s) could not be read" in done.stderr, done.stderr
    one, two = (tmp_path / f"out{n}" for n in (1, 2))
    assert (one / "per-image.jsonl").read_bytes() == (two / "per-image.jsonl").read_bytes()
    assert (
        json.loads((one / "sanity.json").read_text())["results"]
        == json.loads((two / "sanity.json").read_text())["results"]
    )


def test_sanity_flags_name_what_is_wrong(tmp_path, capsys):
    data = _data(tmp_path)
    with pytest.raises(SystemExit):
        main(_sanity_args(data, tmp_path / "o", "--orders", "bottom_up"))
    assert "expected cascading, independent or both" in capsys.readouterr().err
    assert (
        main(_sanity_args(data, tmp_path / "o", "--layers", "modules", "--orders", "independent", "--limit", "2")) == 0
    )
    result = json.loads((tmp_path / "o" / "sanity.json").read_text())
    assert (
        result["layers"] == ["fc", "features"]
        and result["depth"] is None
        and list(result["results"]) == ["independent"]
    )


def test_a_second_sanity_run_refuses_the_first_ones_results_unless_overwrite(tmp_path, capsys):
    data = _data(tmp_path)
    out = tmp_path / "out"
    args = _sanity_args(data, out, "--orders", "independent", "--limit", "2")
    assert main(args) == 0
    first = (out / "sanity.json").read_bytes()
    assert main(args) == 2
    assert f"{out / 'sanity.json'}: exists (an earlier run's); pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    again = json.loads((out / "sanity.json").read_text())
    assert again["results"] == json.loads(first)["results"] and not list(out.glob("*.lock"))
