"""Enhanced Spatial Attention (Liu et al., RFANet, CVPR 2020) as used by RFDN (njulj/RFDN), RLFN (bytedance/RLFN)
and RePAFDN, and the modified ESA of PlainRFDN (NTIRE 2022 ESR, team NEESR)."""

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


PARALLEL_STRIDE = 7  # of ParallelESA's pooled map: one max-pool with stride 7


class ParallelESA(nn.Module):
    """PlainRFDN's ESA: no strided conv; a 7x7 max-pool with stride 7 (padding 1) on the reduced map, two parallel
    3x3 conv + ReLU branches, concatenated and fused by a 3x3 conv (conv_23), then as ESA."""

    def __init__(self, channels: int, esa_channels: int) -> None:
        super().__init__()
        f = esa_channels
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv_2 = nn.Conv2d(f, f, 3, padding=1)
        self.conv_3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv_23 = nn.Conv2d(2 * f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        v = F.max_pool2d(reduced, kernel_size=7, stride=PARALLEL_STRIDE, padding=1)
        v = self.conv_23(torch.cat([F.relu(self.conv_2(v)), F.relu(self.conv_3(v))], dim=1))
        v = tiling.upsample(v, x.shape[-2:], stride=PARALLEL_STRIDE)
        mask = torch.sigmoid(self.conv4(v + self.conv_f(reduced)))
        return x * mask
