"""Results are never replaced or stranded: refusals before any work, --overwrite, nothing left by a run that read
nothing; a full disk (a small tmpfs where one can be mounted, else a write shim) stops with one line, then resumes."""

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from camloc.cli import main
from tests.faults.conftest import NET, camloc, same_tree
from tests.helpers.data import ROOT

# Real subprocesses and servers: seconds each, so outside `make test-fast` (they run in `make test` and CI).
pytestmark = pytest.mark.slow

IDENTITY = ["--model", f"{ROOT / 'tests' / 'helpers' / 'models.py'}:identity_cam"]  # 2 classes: wrong for synth's 8


def _last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "target"),
    [
        (["evaluate", "{data}/test", "--out", "{tmp}/run"], "run/results.json"),
        (["evaluate", "{data}/test", "--out", "{tmp}/run"], "run/rows.csv"),
        (["features", "{data}/test", "--out", "{tmp}/f.npz"], "f.npz"),
        (["faithfulness", "{data}/test", "--out", "{tmp}/faith"], "faith/results.json"),
        (["metrics", "{data}/test", "--json", "{tmp}/m.json"], "m.json"),
        (["train", "{data}", "--out", "{tmp}/model.pt"], "model.pt"),
        (["finegrained", "{data}", "--json", "{tmp}/fg.json", "--mode", "probe"], "fg.json"),
        (["explain", "{data}/test/images", "--out", "{tmp}/x"], "x/results.json"),
        (["boxes", "{data}/test", "--out", "{tmp}/b", "--format", "voc"], "b/voc"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_earlier_results_are_refused_before_any_work(synth, tmp_path, capsys, argv, target):
    earlier = tmp_path / target
    earlier.parent.mkdir(parents=True, exist_ok=True)
    earlier.write_text("an earlier run's")
    args = [a.format(data=synth, tmp=tmp_path) for a in argv]
    unknown = ["--arch", "no-such-net"] if args[0] == "train" else ["--model", "no-such-net"]
    assert main([*args, *unknown]) == 2  # refused before the model is looked for
    line = _last_line(capsys)
    assert line.startswith(f"camloc: error: {earlier}: exists") and "--overwrite to replace it" in line
    assert earlier.read_text() == "an earlier run's"


def test_overwrite_replaces_the_results_and_drops_the_stale_pictures(synth, tmp_path, capsys):
    images = sorted((synth / "test" / "images").iterdir())
    out = tmp_path / "x"
    assert main(["explain", *map(str, images[:3]), "--out", str(out), *NET]) == 0
    assert len(list(out.glob("*.png"))) == 3
    assert main(["explain", str(images[5]), "--out", str(out), *NET]) == 2
    assert "x/results.json: exists (an earlier run's); pass --overwrite" in _last_line(capsys)
    assert main(["explain", str(images[5]), "--out", str(out), "--overwrite", *NET]) == 0
    listed = json.loads((out / "results.json").read_text())["images"]
    assert [r["path"] for r in listed] == [str(images[5])]
    assert sorted(p.name for p in out.glob("*.png")) == [Path(listed[0]["grid"]).name]


def test_a_run_that_read_nothing_leaves_nothing_in_the_way(synth, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["boxes", "nosuch", "--out", "l5", *NET]) == 2
    assert _last_line(capsys) == "camloc: error: nosuch: no such file or folder" and not Path("l5").exists()
    Path("notes.txt").write_text("not an image")
    assert main(["explain", "notes.txt", *NET]) == 2
    assert _last_line(capsys).startswith("camloc: error: no image could be read: notes.txt: not a readable image")
    assert not Path("out/explain").exists()
    assert main(["boxes", "notes.txt", "--out", "l5", *NET]) == 2
    assert not Path("l5").exists() or not any(Path("l5").iterdir())
    # a run that stops on an error before its first record: no journal, no empty export left
    assert main(["boxes", str(synth / "test"), "--out", "l5", "--format", "coco,yolo", *IDENTITY]) == 2
    assert "classes must lie in [0, 2)" in _last_line(capsys)
    assert not Path("l5").exists() or not any(Path("l5").iterdir())
    assert main(["evaluate", str(synth / "test"), "--out", "e", *IDENTITY]) == 2
    assert not Path("e").exists() or not any(Path("e").iterdir())
    # and the corrected commands run at once
    assert main(["boxes", str(synth / "test"), "--out", "l5", "--format", "coco,yolo", *NET]) == 0
    assert main(["evaluate", str(synth / "test"), "--out", "e", *NET]) == 0


def test_an_output_folder_that_is_a_file_is_named(synth, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    image = next((synth / "test" / "images").iterdir())
    assert main(["explain", str(image), "--out", str(tmp_path / "afile"), *NET]) == 2
    assert _last_line(capsys) == f"camloc: error: {tmp_path / 'afile'}: is a file, not a folder"


# --- a full disk --------------------------------------------------------------------------------------------------

BOXES = ["--format", "coco,voc,yolo", "--images-as", "copy", "--batch-size", "2", "--workers", "1", *NET]


def _mount(folder: Path, size_kb: int, remount: bool = False) -> bool:
    """A tmpfs of ``size_kb`` at ``folder`` (or that size given to the one there); False where mounting is refused."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    options = f"{'remount,' if remount else ''}size={size_kb}k"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def test_a_full_disk_stops_with_one_line_and_resumes_to_the_same_files(synth, tmp_path):
    reference = tmp_path / "reference"
    reference.mkdir()
    assert camloc("boxes", synth / "test", "--out", "out", *BOXES, cwd=reference).returncode == 0
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount(disk, 160):
        pytest.skip("this machine refuses to mount a tmpfs (not root, or no CAP_SYS_ADMIN): the shim test covers it")
    try:
        full = camloc("boxes", synth / "test", "--out", "out", *BOXES, cwd=disk)
        assert full.returncode == 2 and "Traceback" not in full.stderr
        line = full.stderr.strip().splitlines()[-1]
        assert line.startswith("camloc: error: out/") and ": no space left on device" in line, line
        for final in ("summary.json", "coco/annotations.json", "coco/results.json"):
            if (disk / "out" / final).exists():  # whole or not at all
                json.loads((disk / "out" / final).read_text())
        assert _mount(disk, 4096, remount=True)
        done = camloc("boxes", synth / "test", "--out", "out", *BOXES, "--resume", cwd=disk)
        assert done.returncode == 0, done.stderr
        same_tree(disk / "out", reference / "out", disk, reference)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_write_error_names_the_file_and_leaves_the_final_whole(synth, tmp_path, capsys, monkeypatch):
    """The shim: the journal's fsync and every atomic replace fail as on a full disk; then space is 'freed'."""
    out = tmp_path / "out"
    args = ["evaluate", str(synth / "test"), "--out", str(out), "--batch-size", "4", *NET]
    real_fsync, calls = os.fsync, [0]

    def full(fd):
        calls[0] += 1
        if calls[0] > 1:  # the first batch is synced, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    assert main(args) == 2
    assert _last_line(capsys) == f"camloc: error: {out / 'rows.csv'}: no space left on device"
    assert not (out / "results.json").exists()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main([*args, "--resume"]) == 0
    reference = tmp_path / "reference"
    assert main(["evaluate", str(synth / "test"), "--out", str(reference), "--batch-size", "4", *NET]) == 0
    assert (out / "rows.csv").read_bytes() == (reference / "rows.csv").read_bytes()
    got = json.loads((out / "results.json").read_text().replace(str(out), str(reference)))
    assert got == json.loads((reference / "results.json").read_text())
