"""What the fault tests share: a small generated dataset, the CLI as a real process, kills at chosen points."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.data import ROOT

NET = ["--model", str(ROOT / "tests" / "faults" / "nets.py") + ":tiny", "--size", "32"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT), "OMP_NUM_THREADS": "1"}
SLOW = {**ENV, "CAMLOC_TEST_DELAY": "0.2"}  # 0.2 s a forward pass: time to stop a run half-way


def camloc(*args: object, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``camloc ARGS`` run to its end in ``cwd`` (stdout and stderr captured as text)."""
    command = [sys.executable, "-m", "camloc", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout)


def records(journal: Path) -> int:
    """The complete records of a journal (lines after its first); 0 while there is none."""
    try:
        return max(0, journal.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def stopped(
    *args: object, cwd: Path, when, sig: int = signal.SIGKILL, timeout: float = 120, delay: float = 0.2
) -> tuple[int, str]:
    """``camloc ARGS``, ``delay`` s a forward pass, sent ``sig`` once ``when()`` holds; its status and stderr."""
    command = [sys.executable, "-m", "camloc", *map(str, args)]
    env = {**SLOW, "CAMLOC_TEST_DELAY": str(delay)}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    began = time.monotonic()
    try:
        while not when():
            if process.poll() is not None:
                pytest.fail(f"the run ended (status {process.returncode}) before the point to stop it at")
            if time.monotonic() - began > timeout:
                pytest.fail("the point to stop the run at never came")
            time.sleep(0.02)
        process.send_signal(sig)
        _, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err


def same_tree(got: Path, reference: Path, got_root: Path, reference_root: Path) -> None:
    """Every file under ``reference`` is under ``got`` with the same bytes (paths of the two roots aside), no more."""
    files = sorted(p.relative_to(reference) for p in reference.rglob("*") if not p.is_dir())
    assert sorted(p.relative_to(got) for p in got.rglob("*") if not p.is_dir()) == files
    for name in files:
        mine, theirs = got / name, reference / name
        if theirs.is_symlink():
            assert os.readlink(mine) == os.readlink(theirs), name
            continue
        text = mine.read_bytes().replace(str(got_root).encode(), str(reference_root).encode())
        assert text == theirs.read_bytes(), name


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Path:
    """``camloc synth``'s shapes: 24 training and 12 test images of 8 classes, 32 pixels."""
    root = tmp_path_factory.mktemp("faults-data")
    done = camloc("synth", root / "syn", "--train", 24, "--test", 12, "--size", 32, cwd=root)
    assert done.returncode == 0, done.stderr
    return root / "syn"
