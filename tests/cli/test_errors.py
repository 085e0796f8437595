"""One error type: library errors are CamlocErrors naming parameters, the CLI names its flags, bugs keep tracebacks."""

import numpy as np
import pytest
import torch
from torch import nn

import camloc
from camloc.cli import main
from camloc.cli.common import user_message
from camloc.errors import CamlocError, InvalidArgument, OutputExists, ResumeError


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
        main(["evaluate", "DATA", "--out", "x"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: camloc evaluate ") and "unrecognized arguments: --out x" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_an_absent_device_is_a_one_line_error(tmp_path, capsys):
    image = tmp_path / "x.png"
    camloc.reports.figures.save_image(np.zeros((8, 8, 3), np.uint8), image)
    assert main(["explain", str(image), "--device", "cuda"]) == 2
    assert capsys.readouterr().err == "camloc: error: --device 'cuda': no CUDA device is available here; use cpu\n"
    assert main(["explain", str(image), "--device", "gpu7"]) == 2
    assert "--device 'gpu7': not a device torch knows" in capsys.readouterr().err
