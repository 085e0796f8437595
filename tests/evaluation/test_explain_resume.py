"""explain's journal: a run killed at any point, then resumed, ends with the JSON and files of an uninterrupted run."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import camloc
from camloc.errors import InvalidArgument, ResumeError
from camloc.evaluation.explain import explain as explain_records
from camloc.evaluation.explain import journal_path
from camloc.images import Preprocess
from camloc.models.info import ModelInfo, with_info
from tests.helpers.data import ROOT
from tests.helpers.models import identity_cam

MODELS = ROOT / "tests" / "helpers" / "models.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT), "OMP_NUM_THREADS": "1"}
explain_module = importlib.import_module("camloc.evaluation.explain")  # the module: the package exports the function
SIZES = [(40, 30), (32, 32), (50, 20), (24, 36), (33, 33), (48, 40), (20, 20)]


def _images(folder: Path) -> list[Path]:
    """Seven small photos of different shapes (their red channel is the identity model's map) and a broken file."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    paths = []
    for i, (w, h) in enumerate(SIZES):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pixels[h // 4 : h // 2, w // 3 : w // 2, 0] = 255  # a bright patch: a box to find
        path = folder / f"im{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    (folder / "broken.png").write_text("not an image")
    return paths[:3] + [folder / "broken.png"] + paths[3:]


@pytest.fixture(scope="module")
def model():
    plain = Preprocess(size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return with_info(identity_cam(), ModelInfo("identity", ["red", "not red"], plain))


@pytest.fixture(scope="module")
def photos(tmp_path_factory, model):
    """The inputs, and the folder of an uninterrupted run on them."""
    root = tmp_path_factory.mktemp("explain")
    paths = _images(root / "in")
    _run(paths, model, root / "ref")
    return paths, root / "ref"


def _run(paths, model, out: Path, **options):
    return camloc.explain(paths, model, topk=2, batch_size=2, out_dir=out, json_path=out / "results.json",
                          maps_dir=out / "maps", progress=False, **options)  # fmt: skip


def _same_run(out: Path, reference: Path) -> None:
    """``out`` holds what ``reference`` does: the JSON (output paths aside), the maps bit for bit, the grids."""
    got = json.loads((out / "results.json").read_text().replace(str(out), str(reference)))
    assert got == json.loads((reference / "results.json").read_text())
    for ref in sorted((reference / "maps").glob("*.npy")):
        assert (out / "maps" / ref.name).read_bytes() == ref.read_bytes()
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in reference.glob("*.png"))
    assert not journal_path(out / "results.json").exists()  # the journal is gone once the JSON is written


class Killed(Exception):
    pass


@pytest.mark.parametrize("after", [0, 1, 3, 5], ids=lambda k: f"after-{k}-images")
def test_a_run_killed_after_any_image_resumes_to_the_same_json(tmp_path, model, photos, monkeypatch, after):
    paths, reference = photos
    whole = json.loads((reference / "results.json").read_text())
    assert len(whole["images"]) == 7 and whole["errors"][0]["path"] == str(paths[3])

    real, calls = explain_module.describe, [0]

    def dying(*args, **kwargs):  # the process "dies" while making image after + 1's record
        calls[0] += 1
        if calls[0] > after:
            raise Killed
        return real(*args, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(explain_module, "describe", dying)
    with pytest.raises(Killed):
        _run(paths, model, out)
    monkeypatch.setattr(explain_module, "describe", real)
    assert not (out / "results.json").exists()
    journalled = journal_path(out / "results.json").read_text().splitlines()[1:]
    assert len([line for line in journalled if '"record"' in line]) <= after
    resumed = _run(paths, model, out, resume=True)
    _same_run(out, reference)
    assert len(resumed.records) == 7 and len(resumed.grids) == 7 and [e.path for e in resumed.errors] == [str(paths[3])]


def test_a_cut_journal_line_and_a_finished_run_resume_too(tmp_path, model, photos):
    paths, reference = photos
    out = tmp_path / "out"
    journal = journal_path(out / "results.json")
    with pytest.raises(Killed):
        _killed_in_draw(paths, model, out, 4)
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:-1]) + lines[-1][:17])  # the last line half-written
    _run(paths, model, out, resume=True)
    _same_run(out, reference)
    _run(paths, model, out, resume=True)  # resuming a finished run computes it again: the same JSON
    _same_run(out, reference)


def _killed_in_draw(paths, model, out, after):
    from camloc.reports import grids

    real, calls = grids.topk_grid, [0]

    def dying(*args, **kwargs):
        calls[0] += 1
        if calls[0] > after:
            raise Killed
        return real(*args, **kwargs)

    grids.topk_grid = dying
    try:
        _run(paths, model, out)
    finally:
        grids.topk_grid = real


def test_resume_refuses_other_settings_and_a_fresh_run_starts_over(tmp_path, model, photos):
    paths, reference = photos
    out = tmp_path / "out"
    with pytest.raises(Killed):
        _killed_in_draw(paths, model, out, 2)
    with pytest.raises(ResumeError, match=r"results.journal.jsonl:1: written by a run with other settings .*'topk'"):
        camloc.explain(paths, model, topk=3, json_path=out / "results.json", resume=True, progress=False)
    with pytest.raises(ResumeError, match=r"other settings .*'inputs'"):
        _run(paths[:-1], model, out, resume=True)
    with pytest.raises(InvalidArgument, match="resume=True needs json_path=FILE"):
        explain_records(paths, model, resume=True)
    _run(paths, model, out)  # no resume: the old journal is dropped, the run starts over
    _same_run(out, reference)


def test_explain_takes_a_bare_model_and_the_old_positional_info(tmp_path, model, photos):
    paths = photos[0]
    info = camloc.model_info(model)
    new = explain_records(paths, model, topk=2, progress=False)
    old = explain_records(paths, camloc.CAM(model), info, topk=2, progress=False)
    assert new.records == old.records and new.settings == old.settings
    with pytest.raises(TypeError, match=r"explain\(\) takes source and method positionally; pass info, ... by name"):
        explain_records(paths, model, info, info)
    with pytest.raises(TypeError, match=r"explain\(\) got info both by position and by name"):
        explain_records(paths, model, info, info=info)
    with pytest.raises(InvalidArgument, match="draws nothing: use camloc.explain"):
        explain_records(paths, model, out_dir=tmp_path / "grids")


@pytest.mark.slow
def test_a_process_killed_by_sigkill_resumes_to_the_same_json(tmp_path):
    paths = _images(tmp_path / "in")
    args = ["explain", *map(str, paths), "--model", f"{MODELS}:slow_identity_cam", "--size", "32", "--mean", "0,0,0",
            "--std", "1,1,1", "--topk", "2", "--batch-size", "1", "--resize", "squash", "--save-maps"]  # fmt: skip

    def camloc_cli(*more: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "camloc", *args, *more], env=ENV, stderr=subprocess.PIPE)

    assert camloc_cli("--out", str(tmp_path / "ref")).wait(timeout=300) == 1  # finished; the broken file: status 1
    out = tmp_path / "out"
    journal = journal_path(out / "results.json")
    running = camloc_cli("--out", str(out))
    deadline = time.monotonic() + 300
    while not (journal.exists() and journal.read_text().count("\n") >= 4) and time.monotonic() < deadline:
        time.sleep(0.02)
    running.send_signal(signal.SIGKILL)
    running.wait(timeout=60)
    assert running.returncode == -signal.SIGKILL and not (out / "results.json").exists()
    assert 3 <= journal.read_text().count("\n") < 9  # killed half-way
    assert camloc_cli("--out", str(out), "--resume").wait(timeout=300) == 1
    _same_run(out, tmp_path / "ref")
