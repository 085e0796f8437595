"""camloc installed read-only and run by a user who cannot write it: the commands work (numba caches elsewhere).

The package is copied to a temporary folder and made read-only. Run as root (as CI is), the command runs
as ``nobody`` through ``setpriv``, keeping only CAP_DAC_READ_SEARCH: it may read everything (the venv's
python may live in a 0700 home such as /root), but writes only where ``nobody`` may. Run as another user,
the command runs as that user, who cannot write the read-only copy either.
"""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import ENV, NET
from tests.helpers.data import ROOT

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
          "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]  # fmt: skip


def _as_user() -> list[str]:
    """The prefix that runs a command as a user who cannot write the package (empty: this user already cannot)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): no way to run as an unprivileged user")
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import os; print(os.getuid())"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot run python as nobody here: {probe.stderr.decode().strip()[-200:]}")
    return NOBODY


def _read_only(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        if not path.is_symlink():
            path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)


def _writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o200)


@pytest.mark.slow
def test_a_user_who_cannot_write_the_package_runs_boxes_and_explain(synth, tmp_path):
    prefix = _as_user()
    package = tmp_path / "site"
    shutil.copytree(ROOT / "src" / "camloc", package / "camloc",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))  # fmt: skip
    before = sorted(p.relative_to(package) for p in package.rglob("*"))
    work = tmp_path / "work"
    (work / "tmp").mkdir(parents=True)
    locked = tmp_path / "locked"  # a folder the user cannot write (also its home)
    locked.mkdir()
    for path in [package, *package.rglob("*"), tmp_path]:
        path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o555)  # world-readable, as an installed package is
    if prefix:
        for path in [work, work / "tmp"]:
            os.chown(path, 65534, 65534)
    _read_only(package)
    _read_only(locked)
    env = {k: v for k, v in ENV.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=f"{package}{os.pathsep}{ROOT}", HOME=str(locked), TMPDIR=str(work / "tmp"))

    def camloc(*args: object) -> subprocess.CompletedProcess:
        command = [*prefix, sys.executable, "-m", "camloc", *map(str, args)]
        return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)

    try:
        where = camloc("--version")
        assert where.returncode == 0, where.stderr
        boxes = camloc("boxes", synth / "test", "--out", "out", "--format", "coco,yolo", *NET)
        assert boxes.returncode == 0, boxes.stderr
        assert "cannot cache" not in boxes.stderr and (work / "out" / "coco" / "annotations.json").is_file()
        scored = camloc("evaluate", synth / "test", "--out", "e", "--protocol", "wsol", *NET)  # numba's kernels
        assert scored.returncode == 0 and "cannot cache" not in scored.stderr, scored.stderr
        uid = 65534 if prefix else os.getuid()
        assert list((work / "tmp" / f"camloc-numba-{uid}").rglob("*.nbi"))  # no writable home: the temp folder
        explain = camloc("explain", synth / "test" / "images", "--out", "x", "--batch-size", 4, *NET)
        assert explain.returncode == 0, explain.stderr
        refused = camloc("explain", synth / "test" / "images", "--out", locked / "x", *NET)
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines()[-1] == (
            f"camloc: error: {locked}: permission denied: cannot write in this folder"
        )
        assert sorted(p.relative_to(package) for p in package.rglob("*")) == before  # nothing written in the package
    finally:
        _writable(package)
        _writable(locked)
