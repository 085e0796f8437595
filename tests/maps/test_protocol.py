"""Every map method satisfies MapMethod: one registry, capabilities asked, more maps equal to a fresh call."""

import pytest
import torch
from torch import nn

import camloc
from camloc.maps import METHOD_NAMES, METHODS, CamOutput, create_method


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
    assert METHOD_NAMES[0] == "cam" and list(METHODS) == list(METHOD_NAMES) and len(METHODS) == 8
    assert METHODS["cam"] is camloc.CAM and METHODS["gradcam++"] is camloc.GradCAMPlusPlus
    with pytest.raises(KeyError):
        METHODS["nope"]


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_each_method_keeps_the_protocol(name):
    model = TinyGap().eval()
    x = torch.randn(3, 3, 16, 16)
    method = create_method(name, model)
    assert method.name == name and method.model is model and isinstance(method.reuses_forward, bool)
    assert method.reuses_forward == (name == "cam")
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
    with pytest.raises(camloc.InvalidArgument, match="unknown map method"):
        create_method("smoothgrad", model)
    assert create_method("gradcam", model, "features.2").target_layer == "features.2"
