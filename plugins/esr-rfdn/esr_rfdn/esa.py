"""Enhanced Spatial Attention (Liu et al., RFANet, CVPR 2020) as used by RFDN (njulj/RFDN) and RLFN (bytedance/RLFN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esr_cli import tiling

# Names of the conv group applied to the pooled map, in the authors' checkpoints.
GROUP_NAMES = {1: ("conv3",), 3: ("conv_max", "conv3", "conv3_")}
STRIDE = 6  # of the pooled map: stride-2 conv, then a max-pool with stride 3


class ESA(nn.Module):
    """A sigmoid mask from a strided, max-pooled low-resolution branch; multiplies the input.

    RFDN's conv group has 3 convs (ReLU between them), RLFN keeps only 1.
    """

    def __init__(self, channels: int, esa_channels: int, group_convs: int = 1) -> None:
        super().__init__()
        f = esa_channels
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2)
        self.group = GROUP_NAMES[group_convs]
        for name in self.group:
            self.add_module(name, nn.Conv2d(f, f, 3, padding=1))
        self.conv4 = nn.Conv2d(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        v = F.max_pool2d(self.conv2(reduced), kernel_size=7, stride=3)
        for i, name in enumerate(self.group):
            v = getattr(self, name)(v)
            if i < len(self.group) - 1:
                v = F.relu(v)
        v = tiling.upsample(v, x.shape[-2:], stride=STRIDE)  # bilinear, as the whole image samples it
        mask = torch.sigmoid(self.conv4(v + self.conv_f(reduced)))
        return x * mask
