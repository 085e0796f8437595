"""PC1 and the border sign rule against independent NumPy / scikit-learn references, batched and top-k."""

import numpy as np
import pytest
import torch
from torch import nn

import camloc
from camloc.maps import CAM, METHODS, PC1, EigenCAM, create_method
from camloc.maps.pc1 import border_sign, first_component, pc1_maps


class TinyGap(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 6)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def _scaled_rows(f: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The (C, h*w) matrix of min-max normalized maps ``w_k f_k``, one channel at a time."""
    rows = []
    for wk, fk in zip(w, f.reshape(len(f), -1), strict=True):
        m = wk * fk
        rows.append(np.zeros_like(m) if m.max() == m.min() else (m - m.min()) / (m.max() - m.min()))
    return np.array(rows)


def _border_rule(v: np.ndarray) -> np.ndarray:
    """The issue's rule, written cell by cell: negate when most border cells lie above the map's mean.

    Ties (half the border above) keep the canonical sign: the largest |cell| positive.
    """
    v = v if v.flat[np.abs(v).argmax()] > 0 else -v
    h, w = v.shape
    cells = {(i, j) for i in range(h) for j in range(w) if i in (0, h - 1) or j in (0, w - 1)}
    above = sum(v[i, j] > v.mean() for i, j in cells)
    return -v if above > len(cells) / 2 else v


def _minmax(v: np.ndarray) -> np.ndarray:
    return (v - v.min()) / (v.max() - v.min())


def _reference_eigh(rows: np.ndarray) -> np.ndarray:
    """First principal direction from the covariance's eigenvectors (not an SVD), largest |cell| positive."""
    centred = rows - rows.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    v = vectors[:, -1]
    return v if v[np.abs(v).argmax()] > 0 else -v


def _reference_sklearn(rows: np.ndarray) -> np.ndarray:
    """The authors' computation: scikit-learn's PCA with the channels as samples (exact solver)."""
    from sklearn.decomposition import PCA

    return PCA(n_components=3, svd_solver="full").fit(rows).components_[0]  # svd_flip: largest |cell| positive


def _features(seed=0, n=2, c=10, h=5, w=6):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    f[:, 3] = 0.7  # a constant channel: its normalized map is zeros
    weights = torch.randn(n, 3, c, generator=g, dtype=torch.float64)
    weights[:, :, 5] = 0.0  # a channel the class ignores
    return f, weights


@pytest.mark.parametrize("reference", ["eigh", "sklearn"])
def test_pc1_maps_equal_an_independent_pca(reference):
    if reference == "sklearn":
        pytest.importorskip("sklearn")
    first = _reference_sklearn if reference == "sklearn" else _reference_eigh
    f, weights = _features()
    ours = pc1_maps(f, weights)
    assert ours.shape == (2, 3, 5, 6) and ours.dtype == torch.float64
    for i in range(2):
        for j in range(3):
            v = first(_scaled_rows(f[i].numpy(), weights[i, j].numpy())).reshape(5, 6)
            np.testing.assert_allclose(ours[i, j].numpy(), _minmax(_border_rule(v)), atol=1e-10)


def test_first_component_is_the_leading_right_singular_vector_of_the_column_centred_rows():
    rows = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    # columns centred over the rows: [[-1, 0, 1], [1, 0, -1], [0, 0, 0]], direction (1, 0, -1) / sqrt(2)
    v = first_component(rows[None])[0]
    assert torch.allclose(v.abs(), torch.tensor([1.0, 0.0, 1.0]) / 2**0.5, atol=1e-6) and torch.isclose(v[0], -v[2])


def test_border_sign_flips_a_map_whose_object_is_the_low_region():
    m = torch.full((7, 7), 0.5)
    m[2:5, 2:5] = -1.0  # the object, negative
    m[0, 0] = 2.0  # the largest magnitude is positive: the canonical sign alone would keep the object low
    # mean (39 * 0.5 + 2 - 9) / 49 = 0.26: all 24 border cells lie above it
    assert torch.equal(border_sign(m), -m)
    assert torch.equal(border_sign(-m), -m)  # a map already right side up stays
    assert torch.equal(border_sign(torch.stack([m, -m, 2 * m])), torch.stack([-m, -m, -2 * m]))
    tie = torch.tensor([[1.0, 1.0], [0.0, -3.0]])  # half the (all-border) cells above the mean: canonical sign
    assert torch.equal(border_sign(tie), -tie) and torch.equal(border_sign(-tie), -tie)
    assert torch.equal(border_sign(torch.zeros(3, 3)), torch.zeros(3, 3))


def test_pc1_puts_a_centred_object_high_whatever_the_svd_sign():
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(7, 7)
    mask[2:5, 2:5] = 1.0
    level = 1 + torch.rand(16, 1, 1, generator=g)
    on_object = (torch.arange(16) % 2 == 0)[:, None, None]  # half the channels fire on the object, half around it
    f = level * torch.where(on_object, 0.3 + 0.7 * mask, 1 - 0.7 * mask)
    f = (f + 1e-3 * torch.rand(16, 7, 7, generator=g))[None]
    # normalized, every channel is the mask or its complement; centred over the channels, each is a multiple of
    # 2 * mask - 1: the unit component is +-1/7 on every cell, of one sign on the object once signed
    scaled = f.flatten(2) - f.flatten(2).amin(-1, keepdim=True)
    raw = first_component(scaled / scaled.amax(-1, keepdim=True)).view(7, 7)
    assert torch.allclose(raw.abs(), torch.full((7, 7), 1 / 7), atol=2e-3)
    assert torch.allclose(border_sign(raw), (2 * mask - 1) / 7, atol=2e-3)
    assert torch.allclose(border_sign(-raw), (2 * mask - 1) / 7, atol=2e-3)  # the object low: flipped
    for sign in (1.0, -1.0):
        ours = pc1_maps(sign * f, torch.ones(1, 1, 16))[0, 0]
        assert torch.allclose(ours, mask, atol=2e-2)  # min-max normalized


def test_pc1_of_a_model_is_pc1_of_its_cam_features_and_classifier():
    pytest.importorskip("sklearn")
    torch.manual_seed(0)
    model = TinyGap().eval()
    x = torch.randn(3, 3, 9, 9)
    out = PC1(model)(x, topk=2)
    cam = CAM(model)(x, topk=2)
    assert torch.equal(out.classes, cam.classes) and torch.equal(out.logits, cam.logits)
    assert out.raw.shape == (3, 2, 9, 9) and out.maps.shape == (3, 2, 9, 9)
    assert torch.equal(out.raw.amin((2, 3)), torch.zeros(3, 2)) and torch.equal(out.raw.amax((2, 3)), torch.ones(3, 2))
    features, fc = cam.features.double().numpy(), model.fc.weight.detach().double().numpy()
    for i in range(3):
        for j in range(2):
            v = _reference_sklearn(_scaled_rows(features[i], fc[out.classes[i, j]])).reshape(9, 9)
            np.testing.assert_allclose(out.raw[i, j].numpy(), _minmax(_border_rule(v)), atol=1e-4)


def test_batched_equals_one_by_one_and_topk_equals_separate_calls():
    torch.manual_seed(2)
    model = TinyGap().eval()
    x = torch.randn(4, 3, 12, 12)
    pc1 = PC1(model)
    out = pc1(x, topk=3)
    for i in range(4):
        alone = pc1(x[i : i + 1], classes=out.classes[i : i + 1])
        assert torch.allclose(alone.raw[0], out.raw[i], atol=1e-5)
    for j in range(3):
        assert torch.allclose(pc1(x, classes=out.classes[:, j]).raw[:, 0], out.raw[:, j], atol=1e-5)
    assert torch.allclose(pc1.more_maps(out, x, out.classes[:, [2, 0]]), out.raw[:, [2, 0]], atol=1e-5)


def test_pc1_is_a_registered_method_on_the_head():
    model = TinyGap().eval()
    assert METHODS["pc1"] is PC1 is camloc.PC1 and "pc1" in camloc.maps.METHOD_NAMES
    method = create_method("pc1", model, normalize="minmax")
    assert method.name == "pc1" and method.reuses_forward and method.target_layer is None
    with pytest.raises(camloc.InvalidArgument, match="target_layer=: PC1 always uses the feature map"):
        create_method("pc1", model, "features.2")


def test_eigencam_sign_border_is_the_svd_map_signed_by_the_border():
    torch.manual_seed(3)
    model = TinyGap().eval()
    x = torch.randn(5, 3, 10, 10)
    svd = EigenCAM(model, sign="svd", relu=False)(x).raw
    border = create_method("eigencam", model, relu=False)(x).raw  # the default
    assert torch.equal(border, border_sign(svd))
    np.testing.assert_allclose(border[:, 0].numpy(), np.stack([_border_rule(m) for m in svd[:, 0].numpy()]), atol=1e-6)
    with pytest.raises(camloc.InvalidArgument, match="sign='pca': expected 'border' or 'svd'"):
        EigenCAM(model, sign="pca")


@pytest.mark.slow
def test_the_runners_take_pc1(tmp_path, mobilenet):
    import json

    from camloc.boxes import paper_box
    from camloc.cli import main
    from camloc.maps import to_image_frame
    from camloc.training.finegrained import cam_boxes

    data = tmp_path / "data"
    assert main(["synth", str(data), "--train", "4", "--test", "4", "--seed", "1"]) == 0
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(data / "test"), "--method", "pc1", "--size", "64", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["method"] == "pc1"
    test = camloc.open_dataset(data / "test")
    pre = camloc.Preprocess(size=64, mode="squash")
    boxes = cam_boxes(mobilenet, test, pre, None, 0.3, progress=False, method="pc1")
    batch = camloc.load_batch([test.samples[0].path], pre)
    raw = PC1(mobilenet)(batch.images, upsample=False).raw[0]
    assert boxes[test.samples[0].image_id] == paper_box(to_image_frame(raw, batch.geometries[0])[0].numpy(), 0.3)
