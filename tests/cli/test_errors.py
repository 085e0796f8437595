"""One error type: library errors are CamlocErrors naming parameters, the CLI names its flags, bugs keep tracebacks."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import camloc
from camloc.cli import build_parser, main
from camloc.cli.common import parameter_flags, user_message
from camloc.errors import CamlocError, DatasetError, InvalidArgument, OutputExists, ResumeError


def _parser(command):
    return build_parser(only=command).commands[command]


@pytest.mark.parametrize(
    "message, shown",
    [
        ("weights=: m.pt is a camloc model file", "--weights: m.pt is a camloc model file"),
        (
            "rows.csv: exists; pass resume=True to continue that run",
            "rows.csv: exists; pass --resume to continue that run",
        ),
        (
            "not on disk: put x.pth in /hub/, or pass weights=PATH",
            "not on disk: put x.pth in /hub/, or pass --weights PATH",
        ),
        ("arch='nonet': unknown architecture", "--arch 'nonet': unknown architecture"),
        ("resume=True needs per_image=FILE: the rows", "--resume needs --per-image FILE: the rows"),
        ("classes= holds an empty class name", "--class-map holds an empty class name"),
        ("target_layer=: CAM always uses", "--target-layer: CAM always uses"),
        ("a file named weights.pth and a word like resumed", "a file named weights.pth and a word like resumed"),
    ],
)
def test_parameters_become_flags(message, shown):
    assert user_message(InvalidArgument("x", message)) == shown


def test_flags_come_from_the_commands_parser():
    boxes = _parser("boxes")
    flags = parameter_flags(boxes)
    # boxes spells the dataset's format= --data-format, and its export formats= --format
    assert flags["format"] == "--data-format" and flags["formats"] == "--format"
    assert flags["classes"] == "--class-map" and flags["class_names"] == "--classes"  # marked: not their dests
    assert flags["target_layer"] == "--target-layer" and "help" not in flags
    error = CamlocError("format='tfrecord': unknown layout; formats=coco,voc")
    assert user_message(error, boxes) == "--data-format 'tfrecord': unknown layout; --format coco,voc"
    assert user_message(error, _parser("evaluate")).startswith("--format 'tfrecord': unknown layout; formats=coco")


def test_errors_that_list_their_parameters_have_only_those_rewritten():
    evaluate = _parser("evaluate")
    exists = OutputExists("rows.csv: exists; pass resume=True to continue that run", arguments=["resume"])
    assert user_message(exists, evaluate) == "rows.csv: exists; pass --resume to continue that run"
    # a line of a user's file quoted in the message is not a parameter
    quoted = DatasetError("bad row 'size=3 split=test'", "meta.csv", 3)
    assert user_message(quoted, evaluate) == "meta.csv:3: bad row '--size 3 --split test'"  # unsaid: every flag
    quoted.arguments = ()
    assert user_message(quoted, evaluate) == "meta.csv:3: bad row 'size=3 split=test'"
    # a parameter that no flag of the command sets keeps its Python spelling
    assert (
        user_message(InvalidArgument("per_image", "per_image=FILE: bad"), _parser("explain")) == "per_image=FILE: bad"
    )


def _tiny_model_file(tmp_path):
    factory = tmp_path / "tiny.py"
    factory.write_text(
        "from collections import OrderedDict\n"
        "from torch import nn\n"
        "def build():\n"
        "    layers = nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)\n"
        "    return nn.Sequential(OrderedDict(zip(('features', 'pool', 'flat', 'fc'), layers)))\n"
    )
    names = tmp_path / "names.txt"
    names.write_text("tabby\ntiger cat\ngoldfish\n")
    image = tmp_path / "x.png"
    camloc.reports.figures.save_image(np.zeros((8, 8, 3), np.uint8), image)
    return [str(image), "--model", f"{factory}:build", "--classes", str(names), "--out", str(tmp_path / "o")]


@pytest.mark.parametrize(
    "flags, shown",
    [
        (
            ["--method", "gradcam", "--target-layer", "feature"],
            "--target-layer 'feature': not a module of Sequential called in forward (did you mean 'features'?)",
        ),
        (["--class", "tabbycat"], "--class 'tabbycat' is not a class name of this model (did you mean 'tabby'?)"),
        (["--weights", "{tmp}/none.pth"], "{tmp}/none.pth: weight file not found"),
    ],
)
def test_library_errors_through_the_cli_name_flags_and_the_closest_name(tmp_path, capsys, flags, shown):
    argv = ["explain", *_tiny_model_file(tmp_path), *(f.format(tmp=tmp_path) for f in flags)]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"camloc: error: {shown.format(tmp=tmp_path)}\n"


def test_an_unknown_model_names_the_closest(tmp_path, capsys):
    image = tmp_path / "x.png"
    camloc.reports.figures.save_image(np.zeros((8, 8, 3), np.uint8), image)
    assert main(["explain", str(image), "--model", "mobilenetv2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("camloc: error: unknown model 'mobilenetv2' (did you mean 'mobilenet_v2'?): use")


def test_library_errors_are_camloc_errors_and_keep_their_builtin_kind(tmp_path):
    cases = [
        (lambda: camloc.open_dataset(tmp_path / "none"), camloc.DatasetError, ValueError),
        (lambda: camloc.load_model("resnet9000"), InvalidArgument, ValueError),
        (lambda: camloc.load_model("vgg11", tmp_path / "none.pth"), camloc.WeightsNotFound, FileNotFoundError),
        (lambda: camloc.CAM(nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten())), camloc.HeadNotFound, ValueError),
        (lambda: camloc.paper_box(np.zeros((2, 2, 2))), InvalidArgument, ValueError),
        (lambda: camloc.normalize_maps(torch.zeros(2, 2), "peak"), InvalidArgument, ValueError),
        (lambda: camloc.open_image(tmp_path / "none.png"), camloc.BadImage, ValueError),
        (lambda: camloc.load_checkpoint(tmp_path / "none.pt"), FileNotFoundError, OSError),
    ]
    for call, kind, builtin in cases:
        with pytest.raises(kind) as info:
            call()
        assert isinstance(info.value, builtin)
        assert isinstance(info.value, CamlocError) or isinstance(info.value, OSError)
        assert "\n" not in str(info.value)
    assert issubclass(OutputExists, FileExistsError) and issubclass(ResumeError, ValueError)


@pytest.mark.pretrained
def test_cli_errors_name_flags_in_one_line(tmp_path, capsys):
    image = tmp_path / "x.png"
    camloc.reports.figures.save_image(np.zeros((8, 8, 3), np.uint8), image)
    assert main(["explain", str(image), "--target-layer", "features.18", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "camloc: error: --target-layer: CAM always uses the feature map its GAP head pools; choose another method\n"
    )
    assert main(["explain", str(image), "--model", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err == f"camloc: error: {tmp_path / 'none.pt'}: model file not found\n"


def test_a_bug_shows_its_traceback(monkeypatch):
    def broken(args):
        raise RuntimeError("a bug, not the user's fault")

    monkeypatch.setattr("camloc.cli.demo.run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["demo"])


def test_a_wrong_flag_shows_the_commands_usage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "DATA", "--save-maps"])  # explain's flag
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: camloc evaluate ") and "unrecognized arguments: --save-maps" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_an_absent_device_is_a_one_line_error(tmp_path, capsys):
    image = tmp_path / "x.png"
    camloc.reports.figures.save_image(np.zeros((8, 8, 3), np.uint8), image)
    assert main(["explain", str(image), "--device", "cuda"]) == 2
    assert capsys.readouterr().err == "camloc: error: --device 'cuda': no CUDA device is available here; use cpu\n"
    assert main(["explain", str(image), "--device", "gpu7"]) == 2
    assert "--device 'gpu7': not a device torch knows" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "argv", "says"),
    [
        ("evaluate", ["evaluate", "data"], "camloc: interrupted; run the same command with --resume to continue\n"),
        ("synth", ["synth", "out"], "camloc: interrupted\n"),  # nothing to resume
    ],
)
def test_ctrl_c_exits_130_saying_how_to_resume_where_the_command_can(monkeypatch, capsys, command, argv, says):
    import importlib

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(f"camloc.cli.{command}"), "run", interrupted)
    assert main(argv) == 130
    assert capsys.readouterr().err == says


def test_operating_system_errors_name_the_file_in_the_way(tmp_path):
    import errno

    afile = tmp_path / "afile"
    afile.write_text("")
    under = OSError(errno.ENOTDIR, "Not a directory", str(afile / "results.journal.jsonl"))
    assert user_message(under) == f"{afile}: is a file, not a folder"
    assert user_message(FileExistsError(errno.EEXIST, "File exists", str(afile))) == f"{afile}: is a file, not a folder"
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x.json"))
    assert user_message(denied) == f"{tmp_path / 'x.json'}: permission denied"
    assert user_message(OSError(errno.ENOSPC, "No space left on device")) == "[Errno 28] No space left on device"
    assert user_message(OutputExists(f"{afile}: exists; pass --resume")) == f"{afile}: exists; pass --resume"


def test_explain_into_a_file_says_the_file_is_in_the_way(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (40, 30)).save(tmp_path / "c.png")
    (tmp_path / "afile").write_text("")
    argv = [
        "explain",
        str(tmp_path / "c.png"),
        "--out",
        str(tmp_path / "afile"),
        "--model",
        f"{Path(__file__).parents[1] / 'helpers' / 'models.py'}:identity_cam",
    ]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"camloc: error: {tmp_path / 'afile'}: is a file, not a folder\n"
