"""The ILSVRC validation layout read lazily: the same samples as an eager read, one sample alive at a time.

On 1,000 XML files; the full-size claims (50,000 files open in about the time a listing takes, in memory
that grows by their names only) are measured by benchmarks/bench_datasets.py (docs/large-datasets.md).
"""

from __future__ import annotations

import gc

import pytest

from camloc.datasets import LazySamples, Sample, open_dataset
from camloc.datasets import voc as voc_module
from tests.helpers.annotations import write_ilsvrc_annotations

FILES = 1_000


@pytest.fixture(scope="module")
def ilsvrc_val(tmp_path_factory):
    """1,000 annotation files: file i has class i % 1000 and the box (i % 97, 20, 300, 200) in a 500 x 375 image."""
    return write_ilsvrc_annotations(tmp_path_factory.mktemp("ilsvrc") / "val", FILES)


def _open(folder, lazy=None):
    return open_dataset(folder, classes=folder.parent / "LOC_synset_mapping.txt", lazy=lazy)


def test_a_lazy_read_gives_the_samples_of_an_eager_one(ilsvrc_val):
    lazy, eager = _open(ilsvrc_val, lazy=True), _open(ilsvrc_val, lazy=False)
    assert isinstance(lazy.samples, LazySamples) and not isinstance(eager.samples, LazySamples)
    assert len(lazy) == len(eager) == FILES
    assert list(lazy.samples) == list(eager.samples)
    # no image: the .JPEG it would be; 1,000 = 10 * 97 + 30
    last = "ILSVRC2012_val_00001000"
    assert lazy[-1] == Sample(last, ilsvrc_val / f"{last}.JPEG", 0, ((30, 20, 300, 200),), (500, 375))
    assert [s.label for s in lazy.samples[233::250]] == [234, 484, 734, 984]
    assert [s.boxes[0][0] for s in lazy.samples[95:99]] == [96, 0, 1, 2]


def test_folders_of_lazy_from_files_are_read_lazily_unless_told(ilsvrc_val, monkeypatch):
    assert not isinstance(_open(ilsvrc_val).samples, LazySamples)
    monkeypatch.setattr(voc_module, "LAZY_FROM", FILES)
    assert isinstance(_open(ilsvrc_val).samples, LazySamples)
    assert not isinstance(_open(ilsvrc_val, lazy=False).samples, LazySamples)


def test_iterating_a_lazy_dataset_keeps_one_sample_at_a_time(ilsvrc_val):
    dataset = _open(ilsvrc_val, lazy=True)

    def alive() -> int:
        gc.collect()  # expat's parser and its handlers form a cycle: garbage, but not freed at once
        return sum(type(o) is Sample for o in gc.get_objects())

    before = alive()
    assert sum(len(s.boxes) for s in dataset.samples) == FILES
    assert alive() == before
    held = list(dataset.samples[:10])  # the test can fail: samples kept are counted
    assert alive() == before + len(held)
