"""RePAFDN, Re-parameterized Pixel Attention Feature Distillation Network (NTIRE 2022 ESR, team Super);
ref. ofsoundof/NTIRE2022_ESR models/team10_repafdn/. The checkpoint holds the convs after re-parameterisation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .esa import ESA
from .rfdn import RFDB, upsampler


@dataclass(frozen=True)
class RePAFDNConfig:
    """Defaults: the challenge model (48 ch; 3 FDB_S with 24 distilled ch, then 1 FDB with 12; ESA width 12)."""

    channels: int = 48
    short_blocks: int = 3
    short_distilled: int = 24
    distilled: int = 12
    esa_channels: int = 12
    scale: int = 4


class PA(nn.Module):
    """Pixel attention: x * sigmoid(1x1 conv(x))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class RePAFDN(nn.Module):
    """Shallow conv; FDB_S blocks (two distillation steps) B1..Bn-1 and one FDB (three) Bn, all without shallow
    residual; 1x1 fusion of every block's output (c), 3x3 conv, pixel attention, global skip, pixel shuffle."""

    def __init__(self, *, channels: int, short_blocks: int, short_distilled: int, distilled: int, esa_channels: int,
                 scale: int) -> None:
        super().__init__()
        self.fea_conv = nn.Conv2d(3, channels, 3, padding=1)
        blocks = [RFDB(channels, short_distilled, ESA(channels, esa_channels, 3), steps=2, shallow_residual=False)
                  for _ in range(short_blocks)]
        blocks.append(RFDB(channels, distilled, ESA(channels, esa_channels, 3), steps=3, shallow_residual=False))
        self.block_names = [f"B{i}" for i in range(1, len(blocks) + 1)]
        for name, block in zip(self.block_names, blocks):
            self.add_module(name, block)
        self.c = nn.Sequential(nn.Conv2d(channels * len(blocks), channels, 1), nn.LeakyReLU(0.05))
        self.LR_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.pa = PA(channels)
        self.upsampler = upsampler(channels, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) RGB in [0, 1] -> (1, 3, sH, sW) in [0, 1]."""
        shallow = self.fea_conv(x)
        outs, feat = [], shallow
        for name in self.block_names:
            feat = getattr(self, name)(feat)
            outs.append(feat)
        feat = self.pa(self.LR_conv(self.c(torch.cat(outs, dim=1)))) + shallow
        return self.upsampler(feat)
