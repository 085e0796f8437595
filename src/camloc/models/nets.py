"""camloc's own small GAP network, for training from scratch on a CPU in minutes.

A plain VGG-style stack (3x3 conv + BatchNorm + ReLU; stride 2 at the start of the second and third
stage) ending in global average pooling and one linear layer: exactly the architecture CAM is defined
on. The feature map has stride 4, so a 64-pixel input gives a 16x16 map: fine enough for small
objects. The first layers run at full resolution because fine textures carry the class in
camloc's synthetic data, and a strided stem loses them (measured: 50 % vs 61 % test accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..errors import InvalidArgument

__all__ = ["ARCHS", "GapNet", "gapnet"]


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class GapNet(nn.Module):
    """camloc's small GAP network (the architecture is in the module docstring).

    A 3x3 stem conv of ``widths[0]`` channels at full resolution, then one stage of two 3x3 convs
    per width (all conv + BatchNorm + ReLU; the second and third stages start with stride 2), global
    average pooling and ``Linear(widths[-1], num_classes)``. Convs are Kaiming-normal initialized
    (fan_out, ReLU), the linear layer Normal(0, 0.01) with zero bias.

    Args:
        num_classes: outputs of the linear layer (at least 1).
        widths: the channels of each stage.
    """

    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        if num_classes < 1:
            raise InvalidArgument("num_classes", f"num_classes must be at least 1, got {num_classes}")
        layers: list[nn.Module] = _conv_bn_relu(3, widths[0], 1)
        c_in = widths[0]
        for i, c in enumerate(widths):
            downsample = 0 < i < len(widths) - 1  # the last stage keeps its resolution for the map
            layers += _conv_bn_relu(c_in, c, 2 if downsample else 1) + _conv_bn_relu(c, c, 1)
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``Tensor[N, num_classes]`` of the images ``x`` (``Tensor[N, 3, H, W]``)."""
        return self.fc(self.pool(self.features(x)).flatten(1))


def gapnet(num_classes: int = 10) -> GapNet:
    """A :class:`GapNet` with the default widths ``(16, 32, 64, 128)``."""
    return GapNet(num_classes)


ARCHS = {"gapnet": gapnet}
