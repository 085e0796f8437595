"""The training sources: every readable image once an epoch, in the seeded order; the unreadable ones
kept by the source itself (no dict passed in), in the model file and the result, and across a resume."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from camloc.datasets import Dataset, Sample
from camloc.distributed import World
from camloc.images import load_batch
from camloc.models.files import read_model_file
from camloc.training.config import TrainConfig
from camloc.training.sources import Decoded, FrozenMaps, Images
from camloc.training.train import train


def _images(tmp_path, n=6):
    """``n`` noise images of 3 classes, then a text file and a missing file (both labelled)."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)).save(path)
        samples.append(Sample(f"{i}.png", path, i % 3, (), None))
    (tmp_path / "text.png").write_text("not an image")
    samples.append(Sample("text.png", tmp_path / "text.png", 0, (), None))
    samples.append(Sample("gone.png", tmp_path / "gone.png", 1, (), None))
    return samples


def _bad(tmp_path):
    return {"text.png": str(tmp_path / "text.png"), "gone.png": str(tmp_path / "gone.png")}


def test_images_give_every_readable_image_once_an_epoch_and_keep_the_unreadable(tmp_path):
    samples = _images(tmp_path)
    config = TrainConfig(size=16, batch_size=4, seed=7, hflip=False, workers=1)
    with ThreadPoolExecutor(1) as pool:
        source = Images(samples, config, pool, Decoded(1 << 20), World())
        batches = list(source.batches(epoch=1, steps=2))
    order = np.random.default_rng([7, 1]).permutation(len(samples))  # the epoch's order, drawn by (seed, epoch)
    readable = [[samples[i].label for i in order[b * 4 : (b + 1) * 4] if i < 6] for b in range(2)]
    assert [None if b is None else b[1].tolist() for b in batches] == [r if len(r) >= 2 else None for r in readable]
    assert all(b[0].shape[1:] == (3, 16, 16) for b in batches if b is not None)
    assert {k: v["path"] for k, v in source.skipped.items()} == _bad(tmp_path)
    assert all(v["image_id"] == k and v["error"] for k, v in source.skipped.items())


def test_frozen_maps_run_the_frozen_part_once_per_readable_image(tmp_path):
    samples = _images(tmp_path)
    config = TrainConfig(size=16, batch_size=4, freeze="x", augment="features", workers=1)
    first = nn.Conv2d(3, 2, 3, stride=2).train()
    with ThreadPoolExecutor(1) as pool:
        source = FrozenMaps(first, samples, config, pool, show=False, here=World())
    assert first.training  # its mode is given back
    assert source.count == 6 and source.labels.tolist() == [s.label for s in samples[:6]]
    x = load_batch([s.path for s in samples[:6]], config.preprocess()).images
    with torch.no_grad():
        want = torch.stack([first(x), first(x.flip(-1))], dim=1).half()  # the image and its mirror image
    assert torch.equal(source.maps, want)
    assert {k: v["path"] for k, v in source.skipped.items()} == _bad(tmp_path)


@pytest.mark.parametrize("augment", ["images", "features"])
def test_unreadable_training_images_are_reported_once_and_survive_a_resume(tmp_path, augment):
    samples = _images(tmp_path, n=10)
    data = Dataset("noise", "csv", tmp_path, samples, ["a", "b", "c"])
    freeze = "features.3" if augment == "features" else None
    config = TrainConfig(size=16, batch_size=4, epochs=2, freeze=freeze, augment=augment, workers=1)
    out = tmp_path / "m.pt"
    cut = train(config, data, out, progress=False, stop_after=1)
    resumed = train(config, data, out, progress=False, resume=True)
    for result in (cut, resumed):
        assert {s["image_id"]: s["path"] for s in result.skipped} == _bad(tmp_path)
    recorded = read_model_file(out)["train"]["skipped"]
    assert recorded == resumed.skipped and len(recorded) == 2
