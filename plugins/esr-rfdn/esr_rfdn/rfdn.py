"""RFDN: Liu et al., "Residual Feature Distillation Network for Lightweight Image SR" (ECCVW 2020); ref. njulj/RFDN."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .esa import ESA


@dataclass(frozen=True)
class RFDNConfig:
    """Defaults: the authors' released model (E-RFDN, AIM 2020 winner); the paper's table model (0.55M) is larger."""

    channels: int = 50
    blocks: int = 4
    esa_channels: int = 12
    scale: int = 4


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.05)


class RFDB(nn.Module):
    """Residual feature distillation block: three (1x1 distill, 3x3 shallow residual) steps, a 3x3 tail,
    concatenation, 1x1 fusion (c5) and ESA."""

    def __init__(self, channels: int, esa_channels: int) -> None:
        super().__init__()
        distilled = channels // 2
        for i in (1, 2, 3):
            self.add_module(f"c{i}_d", nn.Conv2d(channels, distilled, 1))
            self.add_module(f"c{i}_r", nn.Conv2d(channels, channels, 3, padding=1))
        self.c4 = nn.Conv2d(channels, distilled, 3, padding=1)
        self.c5 = nn.Conv2d(distilled * 4, channels, 1)
        self.esa = ESA(channels, esa_channels, group_convs=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled = []
        for distill, refine in ((self.c1_d, self.c1_r), (self.c2_d, self.c2_r), (self.c3_d, self.c3_r)):
            distilled.append(lrelu(distill(x)))
            x = lrelu(refine(x) + x)
        distilled.append(lrelu(self.c4(x)))
        return self.esa(self.c5(torch.cat(distilled, dim=1)))


class RFDN(nn.Module):
    """Shallow conv, RFDBs B1..Bn, 1x1 fusion of every block's output (c), 3x3 conv + global skip, pixel shuffle."""

    def __init__(self, *, channels: int, blocks: int, esa_channels: int, scale: int) -> None:
        super().__init__()
        self.fea_conv = nn.Conv2d(3, channels, 3, padding=1)
        self.block_names = [f"B{i}" for i in range(1, blocks + 1)]
        for name in self.block_names:
            self.add_module(name, RFDB(channels, esa_channels))
        self.c = nn.Sequential(nn.Conv2d(channels * blocks, channels, 1), nn.LeakyReLU(0.05))
        self.LR_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsampler = nn.Sequential(nn.Conv2d(channels, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) RGB in [0, 255] -> (1, 3, sH, sW) in [0, 255]."""
        shallow = self.fea_conv(x)
        outs, feat = [], shallow
        for name in self.block_names:
            feat = getattr(self, name)(feat)
            outs.append(feat)
        feat = self.LR_conv(self.c(torch.cat(outs, dim=1))) + shallow
        return self.upsampler(feat)
