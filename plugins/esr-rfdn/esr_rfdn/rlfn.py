"""RLFN: Kong et al., "Residual Local Feature Network for Efficient SR", CVPRW 2022; ref. bytedance/RLFN."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .esa import ESA


@dataclass(frozen=True)
class RLFNConfig:
    """Defaults: the paper's RLFN (52 channels, 6 RLFB); RLFN-S has 48, the NTIRE 2022 model 46 (mid 48), 4 RLFB."""

    channels: int = 52
    mid_channels: int = 52
    blocks: int = 6
    esa_channels: int = 16
    scale: int = 4


class RLFB(nn.Module):
    """Residual local feature block: three 3x3 conv + LReLU with a local skip, 1x1 conv (c5), ESA."""

    def __init__(self, channels: int, mid_channels: int, esa_channels: int) -> None:
        super().__init__()
        self.c1_r = nn.Conv2d(channels, mid_channels, 3, padding=1)
        self.c2_r = nn.Conv2d(mid_channels, mid_channels, 3, padding=1)
        self.c3_r = nn.Conv2d(mid_channels, channels, 3, padding=1)
        self.c5 = nn.Conv2d(channels, channels, 1)
        self.esa = ESA(channels, esa_channels, group_convs=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for conv in (self.c1_r, self.c2_r, self.c3_r):
            out = F.leaky_relu(conv(out), 0.05)
        return self.esa(self.c5(out + x))


class RLFN(nn.Module):
    """Shallow conv, RLFBs block_1..block_n, 3x3 conv + global skip, pixel shuffle."""

    def __init__(self, *, channels: int, mid_channels: int, blocks: int, esa_channels: int, scale: int) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(3, channels, 3, padding=1)
        self.block_names = [f"block_{i}" for i in range(1, blocks + 1)]
        for name in self.block_names:
            self.add_module(name, RLFB(channels, mid_channels, esa_channels))
        self.conv_2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsampler = nn.Sequential(nn.Conv2d(channels, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) RGB in [0, 255] -> (1, 3, sH, sW) in [0, 255]."""
        shallow = self.conv_1(x)
        feat = shallow
        for name in self.block_names:
            feat = getattr(self, name)(feat)
        return self.upsampler(self.conv_2(feat) + shallow)
