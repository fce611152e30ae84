"""ResNet-18 from torchvision, adapted for small images (CIFAR-style stem)."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet18

from bench.errors import ConfigError
from bench.models.blocks import DropoutSlot


class ResNet18(nn.Sequential):
    """torchvision's resnet18 with a 3×3 stride-1 stem and no max-pool (small inputs).

    Blocks: [input slot, stem] → layer1..layer4 each followed by a conv slot
    → [global pool, flatten, dense slot] → fc head. The dense slot sits on the pooled features,
    the last hidden representation before the output layer.
    """

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int) -> None:
        if len(input_shape) != 3:
            raise ConfigError(
                f"model=resnet18 needs image inputs (C, H, W), got shape {tuple(input_shape)}"
            )
        net = resnet18(weights=None, num_classes=num_outputs)
        net.conv1 = nn.Conv2d(
            int(input_shape[0]), 64, kernel_size=3, stride=1, padding=1, bias=False
        )
        super().__init__(
            nn.Sequential(DropoutSlot("input"), net.conv1, net.bn1, net.relu),
            nn.Sequential(net.layer1, DropoutSlot("conv")),
            nn.Sequential(net.layer2, DropoutSlot("conv")),
            nn.Sequential(net.layer3, DropoutSlot("conv")),
            nn.Sequential(net.layer4, DropoutSlot("conv")),
            nn.Sequential(net.avgpool, nn.Flatten(), DropoutSlot("dense")),
            net.fc,
        )
