"""The command line: explain, bad files, demo, custom models, argument errors."""

import json
import subprocess
import sys

import pytest
from PIL import Image
from skimage import data

from camloc.cli import main
from camloc.reports.figures import save_image


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    good = [
        save_image(data.chelsea(), folder / "chelsea.png"),
        save_image(data.coffee(), folder / "sub" / "coffee.jpg"),
    ]
    missing = tmp_path / "missing.jpg"
    text = folder / "notes.jpg"
    text.write_text("this is not an image")
    whole = tmp_path / "whole.jpg"
    Image.fromarray(data.astronaut()).save(whole, quality=90)
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return folder, good, [missing, text, truncated]


@pytest.mark.slow
def test_explain_writes_grids_and_json_and_reports_bad_files(tmp_path, images, capsys):
    folder, good, bad = images
    out = tmp_path / "out"
    status = main(["explain", str(folder), str(bad[0]), "--out", str(out), "--topk", "3", "--batch-size", "2"])
    captured = capsys.readouterr()
    assert status == 1
    for path in bad:
        assert str(path) in captured.err
    assert "3 file(s) could not be read" in captured.err

    result = json.loads((out / "results.json").read_text())
    assert result["model"] == "mobilenet_v2 (IMAGENET1K_V1)"
    assert sorted(e["path"] for e in result["errors"]) == sorted(str(p) for p in bad)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in result["images"]}
    assert set(by_name) == {"chelsea.png", "coffee.jpg"}
    chelsea = by_name["chelsea.png"]
    assert (chelsea["width"], chelsea["height"]) == (451, 300)
    assert [p["rank"] for p in chelsea["predictions"]] == [1, 2, 3]
    assert chelsea["predictions"][0]["index"] == 285 and chelsea["predictions"][0]["name"] == "Egyptian cat"
    scores = [p["score"] for p in chelsea["predictions"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    assert by_name["coffee.jpg"]["predictions"][0]["name"] == "espresso"
    for record in result["images"]:
        for p in record["predictions"]:
            x0, y0, x1, y1 = p["box"]
            assert 0 <= x0 <= x1 < record["width"] and 0 <= y0 <= y1 < record["height"]
        with Image.open(record["grid"]) as grid:
            assert grid.format == "PNG" and grid.width > 3 * grid.height  # image + 3 panels in a row
    assert sorted(p.name for p in out.glob("*.png")) == ["chelsea.png", "coffee.png"]


@pytest.mark.slow
def test_explain_all_good_exits_zero_and_honours_json_path(tmp_path, images, capsys):
    _, good, _ = images
    json_path = tmp_path / "r" / "res.json"
    assert main(["explain", str(good[0]), "--out", str(tmp_path / "o"), "--json", str(json_path), "--topk", "1"]) == 0
    result = json.loads(json_path.read_text())
    assert len(result["images"]) == 1 and result["errors"] == []
    assert len(result["images"][0]["predictions"]) == 1
    assert "explained 1 image(s)" in capsys.readouterr().out


def test_squash_mode_classifies_the_whole_image(tmp_path, images):
    _, good, _ = images
    json_path = tmp_path / "r.json"
    assert (
        main(["explain", str(good[0]), "--resize", "squash", "--out", str(tmp_path / "o"), "--json", str(json_path)])
        == 0
    )
    record = json.loads(json_path.read_text())["images"][0]
    assert record["predictions"][0]["index"] == 285


def test_custom_model_with_overrides(tmp_path, images, capsys):
    _, good, _ = images
    factory = tmp_path / "net.py"
    factory.write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), "
        "nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))\n"
    )
    classes = tmp_path / "classes.txt"
    classes.write_text("left\nright\n")
    json_path = tmp_path / "custom.json"
    args = [
        "explain",
        str(good[0]),
        "--model",
        f"{factory}:build",
        "--classes",
        str(classes),
        "--size",
        "64",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
        "--topk",
        "2",
        "--out",
        str(tmp_path / "o"),
        "--json",
        str(json_path),
    ]
    assert main(args) == 0
    predictions = json.loads(json_path.read_text())["images"][0]["predictions"]
    assert sorted(p["name"] for p in predictions) == ["left", "right"]

    factory.write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))\n"
    )
    assert main(["explain", str(good[0]), "--model", f"{factory}:build", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "has no global-average-pooling + linear head" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["explain", "x.png", "--topk", "0"], "expected a positive whole number"),
        (["explain", "x.png", "--mean", "1,2"], "expected three comma-separated numbers"),
        (["explain", "x.png", "--threshold", "1.5"], "expected a number in [0, 1]"),
    ],
)
def test_bad_arguments_are_named(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_errors_before_any_image_are_one_line(tmp_path, capsys):
    assert main(["explain", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no image files found in" in capsys.readouterr().err
    image = save_image(data.chelsea(), tmp_path / "x.png")
    assert main(["explain", str(image), "--model", "vgg11", "--weights", str(tmp_path / "none.pth")]) == 2
    assert "none.pth: weight file not found" in capsys.readouterr().err
    assert main(["explain", str(image), "--model", "resnet9000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("camloc: error: unknown model 'resnet9000'") and err.count("\n") == 1


@pytest.mark.slow
def test_demo_through_the_console_script(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "camloc", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert str(tmp_path / "demo" / "chelsea.png") in done.stdout
    result = json.loads((tmp_path / "demo" / "results.json").read_text())
    top1 = {r["path"].rsplit("/", 1)[-1]: r["predictions"][0]["index"] for r in result["images"]}
    assert top1 == {"chelsea.png": 285, "coffee.png": 967}
    for name in ("chelsea.png", "coffee.png"):
        with Image.open(tmp_path / "demo" / name) as grid:
            grid.verify()
