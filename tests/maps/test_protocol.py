"""Every map method satisfies MapMethod: one registry, capabilities asked, more maps equal to a fresh call."""

import numpy as np
import pytest
import torch
from torch import nn

import camloc
from camloc.maps import METHOD_NAMES, METHODS, CamOutput, ClassTarget, create_method


class TinyGap(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_one_registry_lists_every_method_cam_first():
    assert METHOD_NAMES[0] == "cam" and list(METHODS) == list(METHOD_NAMES) and len(METHODS) == 9
    assert METHODS["cam"] is camloc.CAM and METHODS["gradcam++"] is camloc.GradCAMPlusPlus
    with pytest.raises(KeyError):
        METHODS["nope"]


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_each_method_keeps_the_protocol(name):
    model = TinyGap().eval()
    x = torch.randn(3, 3, 16, 16)
    method = create_method(name, model)
    assert method.name == name and method.model is model and isinstance(method.reuses_forward, bool)
    assert method.reuses_forward == (name in ("cam", "pc1"))
    out = method(x, topk=2)
    assert isinstance(out, CamOutput) and out.raw.shape[:2] == (3, 2) and out.maps.shape == (3, 2, 16, 16)
    more = torch.tensor([[4, 0], [1, 2], [3, 3]])
    fresh = method(x, classes=more, upsample=False).raw
    assert torch.allclose(method.more_maps(out, x, more), fresh, atol=1e-6)


def test_create_method_names_the_parameter_at_fault():
    model = TinyGap().eval()
    with pytest.raises(camloc.InvalidArgument, match="target_layer=: CAM always uses") as err:
        create_method("cam", model, "features.2")
    assert err.value.argument == "target_layer"
    with pytest.raises(camloc.InvalidArgument, match="unknown map method; expected one of cam, gradcam"):
        create_method("smoothgrad", model)
    with pytest.raises(
        camloc.InvalidArgument, match=r"method='grad-cam': unknown map method \(did you mean 'gradcam'\?\)"
    ):
        create_method("grad-cam", model)
    with pytest.raises(camloc.InvalidArgument, match="target_layer=: CAM always uses"):
        create_method("cam", model, model.features[2])
    assert create_method("layercam", model, model.features[2]).target_layer == "features.2"
    assert create_method("gradcam", model, "features.2").target_layer == "features.2"


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_class_targets_are_classes_and_options_are_constructor_arguments(name):
    model = TinyGap().eval()
    x = torch.randn(3, 3, 16, 16)
    method = create_method(name, model)
    by_classes = method(x, classes=[[4, 0], [1, 2], [3, 3]])
    by_targets = method(x, targets=[[ClassTarget(4), 0], [1, ClassTarget(torch.tensor(2))], [3, np.int64(3)]])
    as_tensor = method(x, targets=torch.tensor([[4, 0], [1, 2], [3, 3]]))
    for field in ("classes", "scores", "raw", "maps"):
        assert torch.equal(getattr(by_targets, field), getattr(by_classes, field))
        assert torch.equal(getattr(as_tensor, field), getattr(by_classes, field))
    other = create_method(name, model, channels_last=True, fuse_batchnorm=False)
    assert other.channels_last is True
    assert torch.allclose(other(x, classes=[[4, 0], [1, 2], [3, 3]]).raw, by_classes.raw, atol=1e-5)


def test_cam_refuses_a_target_that_is_not_a_class():
    cam = camloc.CAM(TinyGap().eval())
    x = torch.randn(2, 3, 16, 16)

    def margin(out):
        return out[1] - out[0]

    with pytest.raises(camloc.InvalidArgument, match="CAM explains classes only .*not <function") as err:
        cam(x, targets=[margin, 1])
    assert err.value.argument == "targets"
    with pytest.raises(camloc.InvalidArgument, match="give classes= or targets=, not both"):
        cam(x, classes=1, targets=[1, 1])


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_class_scores_are_the_scores_of_the_methods_own_call(name):
    from camloc.maps.core import class_scores

    model = TinyGap().eval()
    x = torch.randn(3, 3, 16, 16)
    method = create_method(name, model)
    assert torch.equal(class_scores(method, x), method(x, topk=1).logits)
    with torch.no_grad():
        assert torch.allclose(class_scores(method, x), model(x), atol=1e-5)

    class Plain:  # a map method of the user's own, without class_scores: its model runs as it is
        def __init__(self, model):
            self.model = model

    with torch.no_grad():
        assert torch.equal(class_scores(Plain(model), x), model(x.contiguous(memory_format=torch.channels_last)))


class TinyGapBn(TinyGap):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1), nn.ReLU()
        )


@pytest.mark.parametrize("name", ["gradcam", "layercam"])
def test_a_folded_copy_first_built_without_gradients_still_gives_them(name):
    """The BatchNorm-folded copy keeps the layer's leaf call, whatever grad mode it is built in."""
    model = TinyGapBn().eval()
    with torch.no_grad():
        model.features[1].running_mean.uniform_(-0.5, 0.5)
        model.features[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 3, 16, 16)
    first = create_method(name, model)
    with torch.no_grad():
        from camloc.maps.core import class_scores

        class_scores(first, x)  # builds the folded copy under no_grad
    fresh = create_method(name, model)
    assert "leaf" in first._folded().code and torch.equal(first(x).raw, fresh(x).raw)
    assert first(x).raw.abs().sum() > 0
