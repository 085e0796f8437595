"""The ILSVRC validation layout at full size: 50,000 XML files open in about the time a listing takes, and the
memory they cost is their names, not their samples (docs/large-datasets.md; benchmarks/bench_datasets.py times it)."""

from __future__ import annotations

import gc
import os
import shutil
import time
import tracemalloc
from pathlib import Path

import pytest

from camloc.datasets import LazySamples, Sample, open_dataset
from tests.helpers.annotations import write_ilsvrc_annotations


def _fastest(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _traced(fn):
    """(what ``fn`` returns, bytes it still holds, its peak bytes above the start), by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, held - before, peak - before


@pytest.fixture
def ilsvrc_sets(tmp_path):
    """5,000 and 50,000 annotation files; removed afterwards (about 220 MB on disk, 4 kB a file)."""
    try:
        yield (
            write_ilsvrc_annotations(tmp_path / "5k" / "val", 5_000),
            write_ilsvrc_annotations(tmp_path / "50k" / "val", 50_000),
        )
    finally:
        shutil.rmtree(tmp_path)


@pytest.mark.slow
def test_50000_xml_files_open_at_the_cost_of_listing_them_in_flat_memory(ilsvrc_sets):
    small, big = ilsvrc_sets

    def open_(folder: Path, lazy: bool | None = None):
        return open_dataset(folder, classes=folder.parent / "LOC_synset_mapping.txt", lazy=lazy)

    # time: opening lists the folder and parses nothing (reading all 50,000 files takes some 100 times a listing:
    # benchmarks/bench_datasets.py)
    listing = _fastest(lambda: sorted(os.listdir(big)))
    assert _fastest(lambda: open_(big)) < 10 * listing + 0.05

    # memory: an open dataset holds its file names, under 100 bytes a file whatever their number (a parsed
    # sample: 1,250), and its peak is hardly more
    small_set, small_held, small_peak = _traced(lambda: open_(small, lazy=True))
    big_set, big_held, big_peak = _traced(lambda: open_(big))  # auto-detected: voc, lazy from 10,000 files on
    assert isinstance(big_set.samples, LazySamples) and (len(small_set), len(big_set)) == (5_000, 50_000)
    assert (big_held - small_held) / 45_000 < 150 and (big_peak - small_peak) / 45_000 < 150
    assert big_peak - big_held < 100_000

    # iterating keeps one sample at a time: after 2,000 of them, none is left alive
    def alive() -> int:
        gc.collect()  # expat's parser and its handlers form a cycle: garbage, but not freed at once
        return sum(type(o) is Sample for o in gc.get_objects())

    before = alive()
    assert sum(len(s.boxes) for s in big_set.samples[1::25]) == 2_000 and alive() == before
    # file i has class i % 1000 and xmin i % 97 (50,000 = 515 * 97 + 45); no image: the .JPEG it would be
    last = "ILSVRC2012_val_00050000"
    assert big_set[-1] == Sample(last, big / f"{last}.JPEG", 0, ((45, 20, 300, 200),), (500, 375))
    assert [s.label for s in big_set.samples[4_999::10_000]] == [0, 0, 0, 0, 0]
    assert [s.label for s in big_set.samples[1_233::10_000]] == [234] * 5
