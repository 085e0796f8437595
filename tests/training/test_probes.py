"""camloc.probe: GAP features, linear probes on them, and CAM through an attached probe (paper §4)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch import nn

import camloc
from camloc.datasets import Dataset, Sample, open_dataset
from camloc.models.files import load_probe, save_probe
from camloc.models.probes import LinearProbe, attach_probe
from camloc.training.features import Features, extract_features, load_features, save_features
from camloc.training.probes import fit_probe


@pytest.fixture(scope="module")
def four_class_data(val_boxes) -> Dataset:
    """The real val images of the four classes with the most images in the shared set (18 images)."""
    root = next(iter(val_boxes)).parent.parent
    data = open_dataset(root, format="csv")
    counts = Counter(s.label for s in data.samples)
    chosen = {label for label, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:4]}
    return dataclasses.replace(data, samples=[s for s in data.samples if s.label in chosen])


@pytest.fixture(scope="module")
def features(mobilenet, four_class_data) -> Features:
    torch.set_num_threads(2)
    return extract_features(mobilenet, four_class_data, camloc.model_info(mobilenet).preprocess, batch_size=8)


def _gap_by_hand(model: nn.Module | camloc.CamAdapter, images: torch.Tensor) -> torch.Tensor:
    adapter = model if isinstance(model, camloc.CamAdapter) else camloc.adapt(model)
    with torch.no_grad():
        return adapter(images)[0].mean((2, 3))


@pytest.fixture(scope="module")
def mobilenet_adapter(mobilenet) -> camloc.CamAdapter:
    """One adapter for the module: each new one folds BatchNorm again on its first call (about a second)."""
    return camloc.adapt(mobilenet)


class TinyGap(nn.Module):
    """conv + BatchNorm + ReLU, GAP, one linear layer: the smallest model CAM is defined on."""

    def __init__(self, classes: int = 3, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class MlpHead(TinyGap):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden(self.pool(self.features(x)).flatten(1)).relu())


def _noise_dataset(tmp_path: Path, n: int, extra: list[Sample] = ()) -> Dataset:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(30 + i, 40, 3), dtype=np.uint8)).save(path)
        samples.append(Sample(f"{i}.png", path, i % 3, (), None))
    return Dataset("noise", "csv", tmp_path, samples + list(extra), ["a", "b", "c"])


TINY = camloc.Preprocess(size=32, resize_size=36)


# --------------------------------------------------------------------------------------------
# extract_features


@pytest.mark.slow
def test_features_are_the_vector_the_linear_head_sees(mobilenet, mobilenet_adapter, four_class_data, features):
    assert features.values.dtype == np.float32 and features.labels.dtype == np.int64
    assert features.values.shape == (len(four_class_data), 1280)
    assert features.image_ids == [s.image_id for s in four_class_data]
    assert features.labels.tolist() == [s.label for s in four_class_data]
    assert features.class_names == four_class_data.class_names and features.skipped == []
    assert features.meta["model"] == camloc.model_info(mobilenet).name and features.meta["cropped"] is False
    assert features.meta["dataset"] == four_class_data.name

    batch = camloc.load_batch([s.path for s in four_class_data[:8]], camloc.model_info(mobilenet).preprocess)
    gap = _gap_by_hand(mobilenet_adapter, batch.images)
    np.testing.assert_allclose(features.values[:8], gap.numpy(), rtol=1e-4, atol=1e-5)
    assert features.values.std() > 0.1  # real activations, not a constant
    with torch.no_grad():
        logits = mobilenet(batch.images)
    head = mobilenet.classifier[1]
    torch.testing.assert_close(
        torch.from_numpy(features.values[:8]) @ head.weight.T + head.bias, logits, rtol=1e-4, atol=1e-4
    )


def test_crops_equal_images_cropped_by_hand(mobilenet, mobilenet_adapter, four_class_data):
    samples = four_class_data.samples[:4]
    (gt,) = samples[0].boxes[:1]
    w, h = Image.open(samples[1].path).size
    crops = {
        samples[0].image_id: gt,
        samples[1].image_id: (w // 2, -20, w + 50, h // 3),  # sticks out of the image: clipped
        samples[3].image_id: (w + 10, 0, w + 20, 10),  # entirely outside: nothing to classify
    }  # samples[2] has no box
    pre = camloc.model_info(mobilenet).preprocess
    out = extract_features(mobilenet, dataclasses.replace(four_class_data, samples=samples), pre, crops=crops)
    assert out.image_ids == [samples[0].image_id, samples[1].image_id] and out.meta["cropped"] is True
    assert [s["image_id"] for s in out.skipped] == [samples[2].image_id, samples[3].image_id]
    assert "no crop box" in out.skipped[0]["error"] and "crop box" in out.skipped[1]["error"]

    by_hand = [
        Image.open(samples[0].path).convert("RGB").crop((gt[0], gt[1], gt[2] + 1, gt[3] + 1)),
        Image.open(samples[1].path).convert("RGB").crop((w // 2, 0, w, h // 3 + 1)),
    ]
    gap = _gap_by_hand(mobilenet_adapter, torch.stack([pre(im)[0] for im in by_hand]))
    np.testing.assert_allclose(out.values, gap.numpy(), rtol=1e-4, atol=1e-5)
    whole = _gap_by_hand(mobilenet_adapter, camloc.load_batch([samples[0].path], pre).images)
    assert not np.allclose(out.values[0], whole[0].numpy(), atol=1e-2)  # the crop changed what the model saw


def test_unreadable_images_are_skipped_and_listed(tmp_path):
    text = tmp_path / "text.png"
    text.write_text("not an image")
    bad = [Sample("text.png", text, 0, (), None), Sample("gone.png", tmp_path / "gone.png", 1, (), None)]
    data = _noise_dataset(tmp_path, 5, bad)
    data.samples.insert(2, data.samples.pop())  # an unreadable file in the middle of a batch
    model = TinyGap().eval()
    out = extract_features(model, data, TINY, batch_size=3, workers=2)
    assert out.image_ids == ["0.png", "1.png", "2.png", "3.png", "4.png"]
    assert out.labels.tolist() == [0, 1, 2, 0, 1]
    assert [(s["image_id"], s["path"]) for s in out.skipped] == [
        ("gone.png", str(tmp_path / "gone.png")),
        ("text.png", str(text)),
    ]
    assert all(s["error"] for s in out.skipped)
    batch = camloc.load_batch([tmp_path / f"{i}.png" for i in range(5)], TINY)
    np.testing.assert_allclose(out.values, _gap_by_hand(model, batch.images).numpy(), rtol=1e-5, atol=1e-6)


def test_features_use_eval_mode_and_restore_the_callers_mode(tmp_path):
    data = _noise_dataset(tmp_path, 4)
    model = TinyGap()
    model.features[1].running_mean.fill_(0.3)  # eval-mode BatchNorm then differs from batch statistics
    batch = camloc.load_batch([s.path for s in data], TINY)
    want = _gap_by_hand(model.eval(), batch.images)
    model.train()
    out = extract_features(model, data, TINY, batch_size=2)
    assert model.training
    np.testing.assert_allclose(out.values, want.numpy(), rtol=1e-5, atol=1e-6)


def test_features_file_round_trip(tmp_path, features):
    path = tmp_path / "f.features"  # any name: numpy must not append ".npz"
    subset = features.subset([0, 3, 5])
    subset.skipped = [{"image_id": "x.jpg", "path": "/d/x.jpg", "error": "no such file"}]
    save_features(subset, path)
    assert path.is_file()
    back = load_features(path)
    assert np.array_equal(back.values, subset.values) and back.values.dtype == np.float32
    assert np.array_equal(back.labels, subset.labels) and back.labels.dtype == np.int64
    assert back.image_ids == subset.image_ids == [features.image_ids[i] for i in (0, 3, 5)]
    assert (back.class_names, back.skipped, back.meta) == (subset.class_names, subset.skipped, subset.meta)

    empty = Features(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), [], None)
    save_features(empty, tmp_path / "e.npz")
    back = load_features(tmp_path / "e.npz")
    assert back.values.shape == (0, 4) and back.image_ids == [] and back.class_names is None


def test_load_features_errors_name_the_file(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(3))
    for path in (junk, other, plain):
        with pytest.raises(ValueError, match="not a camloc features file") as info:
            load_features(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="gone.npz"):
        load_features(tmp_path / "gone.npz")


# --------------------------------------------------------------------------------------------
# fit_probe


@pytest.mark.parametrize("kind", ["svm", "logistic"])
def test_folded_standardization_gives_sklearns_decision_on_raw_features(features, kind):
    x, y = features.values.astype(np.float64), features.labels
    probe = fit_probe(features, kind=kind, C=0.5, seed=3)
    estimator = (
        LinearSVC(C=0.5, random_state=3, max_iter=10_000)
        if kind == "svm"
        else LogisticRegression(C=0.5, max_iter=5_000)
    )
    pipeline = make_pipeline(StandardScaler(), estimator).fit(x, y)
    want = pipeline.decision_function(x)
    assert probe.weight.shape == (4, 1280) and probe.weight.dtype == torch.float32
    np.testing.assert_allclose(probe.decision(features.values), want, atol=1e-4, rtol=1e-4)
    assert probe.labels == sorted(set(y.tolist())) and probe.class_names == [
        features.class_names[i] for i in probe.labels
    ]
    assert np.array_equal(probe.predict(features.values), pipeline.predict(x))
    # Standardizing mattered: the raw features do not give this decision without the fold.
    assert not np.allclose(features.values @ pipeline[-1].coef_.T + pipeline[-1].intercept_, want, atol=1e-2)


def test_unstandardized_probe_is_the_plain_classifier(features):
    probe = fit_probe(features, standardize=False, C=0.1)
    svm = LinearSVC(C=0.1, random_state=0, max_iter=10_000).fit(features.values.astype(np.float64), features.labels)
    np.testing.assert_allclose(probe.weight.numpy(), svm.coef_, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(probe.bias.numpy(), svm.intercept_, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["svm", "logistic"])
def test_two_classes_give_two_rows_with_sklearns_decision(features, kind):
    two = features.subset(features.labels <= np.unique(features.labels)[1])
    x = two.values.astype(np.float64)
    probe = fit_probe(two, kind=kind)
    pipeline = make_pipeline(
        StandardScaler(),
        LinearSVC(random_state=0, max_iter=10_000) if kind == "svm" else LogisticRegression(max_iter=5_000),
    ).fit(x, two.labels)
    scores = probe.decision(two.values)
    assert scores.shape == (len(two), 2)
    np.testing.assert_allclose(scores[:, 1] - scores[:, 0], pipeline.decision_function(x), atol=1e-4, rtol=1e-4)
    assert np.array_equal(probe.predict(two.values), pipeline.predict(x))
    assert len(set(two.labels.tolist())) == 2 and probe.accuracy(two) == 100.0
    if kind == "logistic":
        prob = torch.from_numpy(scores).softmax(1)[:, 1].numpy()
        np.testing.assert_allclose(prob, pipeline.predict_proba(x)[:, 1], atol=1e-5)


def test_probe_on_pretrained_gap_features_separates_real_classes(features):
    """Paper §4: GAP features of an ImageNet CNN are generic enough for a linear SVM on few images."""
    probe = fit_probe(features)
    assert probe.accuracy(features) == 100.0

    def leave_one_out(labels: np.ndarray) -> float:
        hits = 0
        relabelled = dataclasses.replace(features, labels=labels)
        for i in range(len(features)):
            rest = relabelled.subset(np.arange(len(features)) != i)
            hits += int(fit_probe(rest).predict(features.values[i : i + 1])[0] == labels[i])
        return 100.0 * hits / len(features)

    counts = np.bincount(features.labels)
    chance = 100.0 * counts.max() / len(features)  # always guessing the commonest class
    real = leave_one_out(features.labels)
    shuffled = leave_one_out(np.random.default_rng(0).permutation(features.labels))
    assert real >= 80.0 and real >= chance + 40.0, (real, chance)
    assert shuffled < real - 40.0, (shuffled, real)  # the check can fail: random labels are not learned


def test_fit_probe_rejects_bad_input(features):
    with pytest.raises(ValueError, match="at least two classes"):
        fit_probe(features.subset(features.labels == features.labels[0]))
    with pytest.raises(ValueError, match="'svm' or 'logistic'"):
        fit_probe(features, kind="tree")
    with pytest.raises(ValueError, match="empty"):
        fit_probe(features).accuracy(features.subset([]))


# --------------------------------------------------------------------------------------------
# attach_probe


def test_attached_probe_gives_cams_of_the_probes_classes(mobilenet, mobilenet_adapter, four_class_data, features):
    probe = fit_probe(features)
    before = {k: v.clone() for k, v in mobilenet.state_dict().items()}
    info_before = mobilenet.camloc_info
    new = attach_probe(mobilenet, probe)

    # The caller's model is untouched.
    assert mobilenet.classifier[1].out_features == 1000 and mobilenet.camloc_info is info_before
    assert all(torch.equal(v, before[k]) for k, v in mobilenet.state_dict().items())
    assert new.classifier[1] is not mobilenet.classifier[1] and new.classifier[1].out_features == 4
    assert new.camloc_info.class_names == tuple(probe.class_names)
    assert new.camloc_info.preprocess == info_before.preprocess

    batch = camloc.load_batch([s.path for s in four_class_data[:4]], info_before.preprocess)
    with torch.no_grad():
        fmap = mobilenet_adapter(batch.images)[0]  # the original model's features
    out = camloc.CAM(new)(batch.images, classes=[list(range(4))] * 4, upsample=False)
    want = torch.einsum("ck,nkhw->nchw", probe.weight, fmap)
    torch.testing.assert_close(out.raw, want, rtol=1e-4, atol=1e-4)
    gap = fmap.mean((2, 3))
    torch.testing.assert_close(out.logits, gap @ probe.weight.T + probe.bias, rtol=1e-4, atol=1e-4)
    # CAM's defining identity through the probe: the mean of a class's map plus its bias is its score.
    torch.testing.assert_close(out.raw.mean((2, 3)) + probe.bias, out.logits, rtol=1e-4, atol=1e-4)
    labels = np.asarray(probe.labels)[out.logits.argmax(1).numpy()]
    assert np.array_equal(labels, probe.predict(features.values[:4]))


def test_attach_probe_rejects_heads_it_cannot_replace(features):
    probe = fit_probe(features)
    with pytest.raises(ValueError, match="takes 1280 features but TinyGap's classifier takes 8"):
        attach_probe(TinyGap(), probe)
    small = LinearProbe(torch.randn(2, 8), torch.zeros(2), ["a", "b"], [0, 1], "svm", 1.0)
    with pytest.raises(ValueError, match="one nn.Linear") as info:
        attach_probe(MlpHead(), small)  # GAP -> Linear -> ReLU -> Linear: no single linear layer to replace
    assert "\n" not in str(info.value)
    model = TinyGap(classes=5)
    new = attach_probe(model, small)
    assert new.fc.out_features == 2 and model.fc.out_features == 5
    assert not hasattr(new, "camloc_info")  # nothing to rename when the model had no info


def test_attach_probe_rejects_mobilenet_v3s_nonlinear_head():
    from torchvision.models import mobilenet_v3_small

    model = mobilenet_v3_small(num_classes=10)
    probe = LinearProbe(torch.randn(2, 576), torch.zeros(2), ["a", "b"], [0, 1], "svm", 1.0)
    with pytest.raises(ValueError, match="GAP|global average pooling") as info:
        attach_probe(model, probe)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# probe files


def test_probe_file_round_trip(tmp_path, mobilenet, features):
    probe = fit_probe(features, kind="logistic", C=0.25)
    pre = camloc.model_info(mobilenet).preprocess
    path = tmp_path / "birds.probe"
    save_probe(probe, path, backbone="mobilenet_v2", backbone_weights="/w/mnv2.pth", preprocess=pre)
    raw = torch.load(path, weights_only=True)
    assert (raw["camloc"], raw["version"], raw["kind"], raw["backbone"]) == ("model", 2, "probe", "mobilenet_v2")
    assert raw["written_by"]["camloc"] == camloc.__version__

    back, settings = load_probe(path)
    assert torch.equal(back.weight, probe.weight) and torch.equal(back.bias, probe.bias)
    assert (back.class_names, back.labels, back.kind, back.C) == (probe.class_names, probe.labels, "logistic", 0.25)
    assert settings == {"backbone": "mobilenet_v2", "backbone_weights": "/w/mnv2.pth", "preprocess": pre}
    head = attach_probe(mobilenet, back).classifier[1]  # what the zoo will do with the file
    assert torch.equal(head.weight, probe.weight) and torch.equal(head.bias, probe.bias)

    save_probe(probe, tmp_path / "bare.probe", backbone="timm:resnet18")
    _, settings = load_probe(tmp_path / "bare.probe")
    assert settings == {"backbone": "timm:resnet18", "backbone_weights": None, "preprocess": None}


def test_load_probe_errors_name_the_file(tmp_path, features):
    good = tmp_path / "good.probe"
    save_probe(fit_probe(features), good, backbone="mobilenet_v2")
    cases = {
        "garbage.probe": b"this is not a torch file",
        "cut.probe": good.read_bytes()[:200],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "weights.pth")
    future = torch.load(good, weights_only=True) | {"version": 99}
    torch.save(future, tmp_path / "future.probe")
    record = torch.load(good, weights_only=True)
    damaged = record | {"probe": record["probe"] | {"bias": torch.zeros(3)}}
    torch.save(damaged, tmp_path / "damaged.probe")
    torch.save(record | {"kind": "network"}, tmp_path / "network.probe")
    for name, message in [
        ("garbage.probe", "not a readable torch file"),
        ("cut.probe", "not a readable torch file"),
        ("weights.pth", "not a camloc model file"),
        ("future.probe", "newer camloc \\(format version 99"),
        ("damaged.probe", "damaged camloc probe file"),
        ("network.probe", "not a probe file"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            load_probe(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="gone.probe"):
        load_probe(tmp_path / "gone.probe")


def test_probe_files_of_format_1_still_load(tmp_path, features):
    """camloc 0.1 wrote probes in a layout of their own; they are read into the one model-file format."""
    probe = fit_probe(features, kind="logistic", C=0.5)
    old = {
        "camloc": "probe", "version": 1, "backbone": "mobilenet_v2", "backbone_weights": None,
        "weight": probe.weight, "bias": probe.bias, "class_names": probe.class_names, "labels": probe.labels,
        "kind": "logistic", "C": 0.5, "preprocess": None,
    }  # fmt: skip
    torch.save(old, tmp_path / "old.probe")
    back, settings = load_probe(tmp_path / "old.probe")
    assert torch.equal(back.weight, probe.weight) and torch.equal(back.bias, probe.bias)
    assert (back.class_names, back.labels, back.kind, back.C) == (probe.class_names, probe.labels, "logistic", 0.5)
    assert settings == {"backbone": "mobilenet_v2", "backbone_weights": None, "preprocess": None}
