"""One model-file format for networks and probes: a kind field, one version rule, atomic writes."""

import pytest
import torch

import camloc
from camloc.models import build_model, load_checkpoint, read_model_file, save_checkpoint
from camloc.models.files import FORMAT_VERSION, is_model_file


def _save(path, model):
    return save_checkpoint(
        path, model, arch="gapnet", num_classes=3, class_names=["a", "b", "c"], preprocess=camloc.Preprocess(size=32)
    )


def test_network_files_record_their_kind_and_versions(tmp_path):
    model = build_model("gapnet", 3)
    _save(tmp_path / "m.pt", model)
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert (raw["camloc"], raw["version"], raw["kind"]) == ("model", FORMAT_VERSION, "network")
    assert raw["written_by"]["camloc"] == camloc.__version__ and raw["written_by"]["torch"]
    back = load_checkpoint(tmp_path / "m.pt")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), model.state_dict().values(), strict=True))
    assert camloc.model_info(back).class_names == ("a", "b", "c")
    assert raw["map_size"] is None and camloc.model_info(back).map_size is None


def test_a_network_file_records_the_size_to_read_maps_at(tmp_path):
    path = save_checkpoint(
        tmp_path / "m.pt", build_model("gapnet", 3), arch="gapnet", num_classes=3, class_names=None,
        preprocess=camloc.Preprocess(size=32), map_size=48,
    )  # fmt: skip
    info = camloc.model_info(load_checkpoint(path))
    assert (info.preprocess.size, info.map_size) == (32, 48) and "map_size=48" in repr(info)
    record = torch.load(path, weights_only=True)
    del record["map_size"]  # camloc 0.2's files have none
    torch.save(record, tmp_path / "old.pt")
    assert camloc.model_info(load_checkpoint(tmp_path / "old.pt")).map_size is None
    torch.save(record | {"map_size": "big"}, tmp_path / "odd.pt")
    with pytest.raises(camloc.ModelFileError, match=r"odd.pt: damaged camloc model file \(map_size 'big'\)"):
        load_checkpoint(tmp_path / "odd.pt")


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    _save(path, build_model("gapnet", 3))
    before = path.read_bytes()

    def dies_midway(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(OSError, match="disk full"):
        _save(path, build_model("gapnet", 3))
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_one_version_rule(tmp_path):
    record = torch.load(_save(tmp_path / "m.pt", build_model("gapnet", 3)), weights_only=True)
    torch.save(record | {"version": FORMAT_VERSION + 1}, tmp_path / "new.pt")
    with pytest.raises(camloc.ModelFileError, match=f"newer camloc \\(format version {FORMAT_VERSION + 1}"):
        read_model_file(tmp_path / "new.pt")
    old = {k: v for k, v in record.items() if k not in ("kind", "written_by")} | {"version": 1}
    torch.save(old, tmp_path / "old.pt")  # camloc 0.1's network files: no kind field
    assert read_model_file(tmp_path / "old.pt")["kind"] == "network"
    assert load_checkpoint(tmp_path / "old.pt").fc.out_features == 3
    torch.save(record | {"version": "2"}, tmp_path / "odd.pt")
    with pytest.raises(camloc.ModelFileError, match="damaged camloc model file"):
        read_model_file(tmp_path / "odd.pt")


def test_model_file_names_are_told_apart_from_architectures():
    assert all(is_model_file(n) for n in ("m.pt", "dir/m.pth", "x.ckpt", "birds.probe"))
    assert not any(is_model_file(n) for n in ("resnet50", "timm:resnet18", "net.py:build", "pkg.mod:fn"))
