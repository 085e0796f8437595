"""`camloc train` under torchrun (two gloo processes on the CPU): each step's gradient is the global
batch's, so a network without BatchNorm in training mode ends where one process with the global batch
ends; a run stopped after an epoch resumes to the same weights; the CLI writes one model and one JSON."""

import importlib
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from camloc.datasets.registry import open_train_test
from camloc.datasets.synthetic import generate
from camloc.models.files import read_model_file
from camloc.models.nets import GapNet
from camloc.training.train import TrainConfig, train
from tests.evaluation.test_distributed import ENV

pytestmark = pytest.mark.slow

# Both sources of batches: augmented images, and crops of the frozen layers' output; and BGC's loss.
CONFIGS = {
    "images": {"arch": "gapnet", "size": 32, "epochs": 2, "lr": 0.05, "hide": 0.25, "workers": 1},
    "features": {
        "arch": "gapnet", "size": 32, "epochs": 2, "lr": 0.05, "freeze": "features.3", "augment": "features",
        "workers": 1,
    },
    # BGC's direction and norm terms are per image, so they sum across processes too (no attentive
    # dropout: its draws are per process)
    "bgc": {
        "arch": "gapnet", "size": 32, "epochs": 2, "lr": 0.05, "freeze": "features.3", "augment": "features",
        "workers": 1, "wsol_loss": "bgc", "wsol_options": {"drop": 0, "warm": 0},
    },
}  # fmt: skip


def without_batchnorm(num_classes: int) -> nn.Module:
    """camloc's GapNet with its BatchNorm layers taken out (each process would normalize by its own images)."""
    model = GapNet(num_classes)
    for i, layer in enumerate(model.features):
        if isinstance(layer, nn.BatchNorm2d):
            model.features[i] = nn.Identity()
    model.camloc_new = tuple(n for n, _ in model.named_parameters())
    return model


LAUNCHED = """
import sys, torch
import importlib
T = importlib.import_module("camloc.training.train")  # the module: camloc.training.train is also its function
from camloc.datasets.registry import open_train_test
from camloc.datasets.synthetic import generate
from camloc.distributed import barrier, join, world
from tests.training.test_distributed_train import CONFIGS, without_batchnorm

T.build_model = lambda arch, n, **kw: without_batchnorm(n)
join()
out = sys.argv[1]
if world().is_main:  # one writer: the other process would find the folder half written
    generate(out + "/data", "shapes", train=26, test=4, seed=4)
barrier()
train_set, _ = open_train_test(out + "/data")
for name, options in CONFIGS.items():
    config = T.TrainConfig(batch_size=5, **options)
    T.train(config, train_set, f"{out}/{name}.pt", progress=False)
    T.train(config, train_set, f"{out}/{name}-cut.pt", progress=False, stop_after=1)
    resumed = T.train(config, train_set, f"{out}/{name}-cut.pt", progress=False, resume=True)
    if world().is_main:
        torch.save(resumed.model.state_dict(), f"{out}/{name}-resumed.sd")
"""


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Both configurations trained by two processes of 5 images a step (global batch 10), and resumed."""
    out = tmp_path_factory.mktemp("ddp")
    script = out / "launched.py"
    script.write_text(textwrap.dedent(LAUNCHED))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)]
    done = subprocess.run([*launch, str(out)], capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_processes_step_as_one_with_the_global_batch(two_processes, name, monkeypatch, tmp_path):
    module = importlib.import_module("camloc.training.train")  # not the function camloc.training exports

    monkeypatch.setattr(module, "build_model", lambda arch, n, **kw: without_batchnorm(n))
    train_set, _ = open_train_test(two_processes / "data")
    one = train(TrainConfig(batch_size=10, **CONFIGS[name]), train_set, tmp_path / "one.pt", progress=False)
    # 26 images, global batch 10: 2 full steps and one of 6 (3 per process) an epoch
    assert [h["images"] for h in one.history] == [26, 26]
    record = read_model_file(two_processes / f"{name}.pt")
    two = record["state_dict"]
    mine = one.model.state_dict()
    assert set(two) == set(mine)
    for key in mine:  # the same sums, added in another order: equal to float rounding
        torch.testing.assert_close(two[key], mine[key], rtol=1e-4, atol=1e-6, msg=key)
    history = record["train"]["history"]
    assert [h["images"] for h in history] == [26, 26] and record["train"]["processes"] == 2
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in one.history], rel=1e-4)
    resumed = torch.load(two_processes / f"{name}-resumed.sd", weights_only=True)
    assert all(torch.equal(resumed[k], two[k]) for k in two)  # stopped after epoch 1 and resumed: bit-identical


def test_resume_with_another_number_of_processes_is_refused(two_processes, monkeypatch):
    module = importlib.import_module("camloc.training.train")  # not the function camloc.training exports

    monkeypatch.setattr(module, "build_model", lambda arch, n, **kw: without_batchnorm(n))
    train_set, _ = open_train_test(two_processes / "data")
    config = TrainConfig(batch_size=5, **CONFIGS["images"])
    with pytest.raises(ValueError, match="was trained by 2 process\\(es\\), not 1"):
        train(config, train_set, two_processes / "images-cut.pt", resume=True, progress=False)


def test_torchrun_camloc_train_writes_one_model_and_one_report(tmp_path):
    data = tmp_path / "data"
    generate(data, "shapes", train=20, test=8, seed=1)
    model = tmp_path / "m.pt"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "camloc"]
    args = ["train", str(data), "--out", str(model), "--epochs", "1", "--size", "32", "--batch-size", "4"]
    done = subprocess.run([*launch, *args, "--workers", "1"], capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("camloc: model in") == 1 and done.stderr.count("camloc: training gapnet") == 1
    assert "2 processes of 4 images a step" in done.stderr
    report = json.loads(model.with_suffix(".json").read_text())
    assert report["processes"] == 2 and report["history"][0]["images"] == 20  # 2 steps of 2 x 4, then 2 x 2
    assert report["cam"]["images"] == report["center"]["images"] == 8  # every test image, once
    assert not list(tmp_path.glob("m.pt.*"))  # no stray copies: rank 0 alone writes the model file
