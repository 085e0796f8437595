"""Every long command, killed (SIGKILL) half-way and run again with --resume, ends with an uninterrupted run's files.

Each command runs as a real process on ``camloc synth``'s 12 test images with a tiny 8-class net
(``tests/faults/nets.py``), slowed to 0.2 s a forward pass so that the kill lands after a chosen
number of journal records. The reference run and the killed-then-resumed run work in two folders
with the same relative ``--out``; their files must be byte for byte the same (their own paths aside).
SIGINT and SIGTERM end a run cleanly: exit status 130 / 143, one line saying how to resume, no traceback.
"""

import json
import signal
from pathlib import Path

import pytest
import torch

from tests.faults.conftest import NET, camloc, records, same_tree, stopped

# Real subprocesses and servers: seconds each, so outside `make test-fast` (they run in `make test` and CI).
pytestmark = pytest.mark.slow


def _commands(data: Path) -> dict[str, tuple[list, str]]:
    """Command -> (its arguments, its journal relative to the working folder)."""
    test = data / "test"
    return {
        "evaluate": (["evaluate", test, "--out", "out", "--batch-size", 2, *NET], "out/rows.csv"),
        "boxes": (
            ["boxes", test, "--out", "out", "--format", "coco,voc,yolo", "--batch-size", 2, "--workers", 1, *NET],
            "out/journal.jsonl",
        ),
        "explain": (
            ["explain", test / "images", "--out", "out", "--save-maps", "--batch-size", 2, *NET],
            "out/results.journal.jsonl",
        ),
        "features": (["features", test, "--out", "out/f.npz", "--batch-size", 2, *NET], "out/f.npz.journal.jsonl"),
        "faithfulness": (
            ["faithfulness", test, "--out", "out", "--steps", 4, "--methods", "cam,gradcam", "--batch-size", 2, *NET],
            "out/results.journal.jsonl",
        ),
        "metrics": (
            ["metrics", test, "--json", "out/results.json", "--per-image", "out/rows.csv", "--no-road",
             "--methods", "cam,gradcam", "--batch-size", 2, *NET],
            "out/rows.csv",
        ),
    }  # fmt: skip


@pytest.fixture(scope="module")
def references(synth, tmp_path_factory):
    """Command -> the working folder of its uninterrupted run (each made when first asked for)."""
    made: dict[str, Path] = {}

    def reference(name: str) -> Path:
        if name not in made:
            folder = tmp_path_factory.mktemp(f"reference-{name}")
            done = camloc(*_commands(synth)[name][0], cwd=folder)
            assert done.returncode == 0, done.stderr
            made[name] = folder
        return made[name]

    return reference


SLOW = pytest.mark.slow
CASES = [
    pytest.param("boxes", 1, id="boxes-after-1"),
    pytest.param("boxes", 5, id="boxes-after-5", marks=SLOW),
    pytest.param("evaluate", 1, id="evaluate-after-1", marks=SLOW),
    pytest.param("evaluate", 4, id="evaluate-after-4", marks=SLOW),
    pytest.param("explain", 3, id="explain-after-3", marks=SLOW),
    pytest.param("metrics", 2, id="metrics-after-2", marks=SLOW),
    pytest.param("features", 3, id="features-after-3", marks=SLOW),
    pytest.param("faithfulness", 3, id="faithfulness-after-3", marks=SLOW),
]


@pytest.mark.parametrize(("command", "after"), CASES)
def test_a_run_killed_after_k_records_resumes_to_the_same_files(synth, references, tmp_path, command, after):
    args, journal = _commands(synth)[command]
    status, _ = stopped(*args, cwd=tmp_path, when=lambda: records(tmp_path / journal) >= after)
    assert status == -signal.SIGKILL
    assert records(tmp_path / journal) < 12  # killed half-way
    done = camloc(*args, "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{journal}: resumed after " in done.stderr
    same_tree(tmp_path / "out", references(command) / "out", tmp_path, references(command))


SIGNALS = [
    pytest.param("boxes", signal.SIGTERM, 143, "terminated (SIGTERM)", id="boxes-sigterm"),
    pytest.param("boxes", signal.SIGINT, 130, "interrupted", id="boxes-sigint", marks=SLOW),
    pytest.param("evaluate", signal.SIGINT, 130, "interrupted", id="evaluate-sigint", marks=SLOW),
    pytest.param("explain", signal.SIGTERM, 143, "terminated (SIGTERM)", id="explain-sigterm", marks=SLOW),
]


@pytest.mark.parametrize(("command", "sig", "status", "said"), SIGNALS)
def test_sigint_and_sigterm_end_cleanly_saying_how_to_resume(synth, references, tmp_path, command, sig, status, said):
    args, journal = _commands(synth)[command]
    code, err = stopped(*args, cwd=tmp_path, when=lambda: records(tmp_path / journal) >= 3, sig=sig)
    assert code == status
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"camloc: {said}; run the same command with --resume to continue"
    kept = (tmp_path / journal).read_text()
    assert kept.endswith("\n") and 3 <= records(tmp_path / journal) < 12  # synced, whole records
    done = camloc(*args, "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    same_tree(tmp_path / "out", references(command) / "out", tmp_path, references(command))


def test_resume_says_which_setting_differs_and_that_there_is_no_journal(synth, references, tmp_path):
    args, journal = _commands(synth)["boxes"]
    stopped(*args, cwd=tmp_path, when=lambda: records(tmp_path / journal) >= 1)
    other = camloc(*args, "--threshold", "0.3", "--resume", cwd=tmp_path)
    assert other.returncode == 2
    assert (
        other.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "camloc: error: out/journal.jsonl:1: written by a run with other settings {'threshold': (0.2, 0.3)}"
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = camloc(*args, "--resume", cwd=elsewhere)
    assert done.returncode == 0 and f"{journal}: no journal to resume; starting afresh" in done.stderr


def _tensors(value, where: str = "") -> dict:
    """Every tensor of a saved record (nested dicts and lists), by where it is."""
    if isinstance(value, torch.Tensor):
        return {where: value}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list | tuple) else ()
    return {k: t for key, v in items for k, t in _tensors(v, f"{where}/{key}").items()}


def _history(path: Path) -> list[dict]:
    return [
        {k: v for k, v in h.items() if k not in ("seconds", "images_per_s")}
        for h in json.loads(path.read_text())["history"]
    ]


@pytest.mark.slow
def test_train_killed_after_an_epoch_resumes_to_the_same_weights(synth, tmp_path):
    args = ["train", synth, "--epochs", 6, "--size", 32, "--batch-size", 8, "--workers", 1, "--no-eval"]
    reference = tmp_path / "reference"
    reference.mkdir()
    done = camloc(*args, "--out", "model.pt", cwd=reference)
    assert done.returncode == 0, done.stderr
    status, _ = stopped(*args, "--out", "model.pt", cwd=tmp_path, when=(tmp_path / "model.pt").exists)
    assert status == -signal.SIGKILL
    done = camloc(*args, "--out", "model.pt", "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    got = _tensors(torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=False))
    want = _tensors(torch.load(reference / "model.pt", map_location="cpu", weights_only=False))
    assert got.keys() == want.keys() and len(want) > 4
    for key, value in want.items():
        assert torch.equal(got[key], value), key
    assert _history(tmp_path / "model.json") == _history(reference / "model.json")


@pytest.mark.slow
def test_finegrained_killed_while_training_reruns_to_the_same_results(synth, tmp_path):
    args = ["finegrained", synth, "--mode", "train", "--epochs", 3, "--size", 32, "--work", "w", "--json", "r.json"]
    reference = tmp_path / "reference"
    reference.mkdir()
    done = camloc(*args, cwd=reference)
    assert done.returncode == 0, done.stderr
    status, _ = stopped(*args, cwd=tmp_path, when=(tmp_path / "w" / "cam-crops" / "train" / "images").exists)
    assert status == -signal.SIGKILL
    done = camloc(*args, cwd=tmp_path)  # a rerun resumes from the work folder's models and crops
    assert done.returncode == 0, done.stderr
    got = json.loads((tmp_path / "r.json").read_text())
    want = json.loads((reference / "r.json").read_text())
    assert {k: v for k, v in got.items() if k != "versions"} == {k: v for k, v in want.items() if k != "versions"}
    for name in ("full", "cam-crop", "gt-crop"):
        mine = _tensors(torch.load(tmp_path / "w" / f"{name}.pt", map_location="cpu", weights_only=False))
        theirs = _tensors(torch.load(reference / "w" / f"{name}.pt", map_location="cpu", weights_only=False))
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in theirs), name


def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(synth, references, tmp_path):
    args, journal = _commands(synth)["boxes"]

    def second_run_refused() -> bool:  # asked while the first run writes its journal
        if records(tmp_path / journal) < 1:
            return False
        other = camloc(*args, "--resume", cwd=tmp_path)
        line = other.stderr.strip().splitlines()[-1]
        assert other.returncode == 2 and line.startswith(
            "camloc: error: out/journal.jsonl.lock: another camloc run (PID "
        )
        assert line.endswith(") is writing here; wait for it to end, or choose another place")
        return True

    status, _ = stopped(*args, cwd=tmp_path, when=second_run_refused, delay=2.0)  # then killed: its lock stays
    assert status == -signal.SIGKILL and (tmp_path / "out" / "journal.jsonl.lock").exists()
    done = camloc(*args, "--resume", cwd=tmp_path)  # a dead process's lock is taken over
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "out" / "journal.jsonl.lock").exists()
    same_tree(tmp_path / "out", references("boxes") / "out", tmp_path, references("boxes"))
