"""PlainRFDN (NTIRE 2022 ESR, team NEESR; the file is named team05_efdn but it is not EFDN); ref.
ofsoundof/NTIRE2022_ESR models/team05_efdn/plainsr.py + plainblock.py. The checkpoint holds re-parameterised 3x3
convs, each inside an ECB-style wrapper (`*.conv3x3.*`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .esa import ParallelESA
from .rfdn import RFDB, upsampler


@dataclass(frozen=True)
class PlainRFDNConfig:
    """Defaults: the challenge model (42 ch, 4 blocks, 10 distilled ch, ESA width 42 // 4 = 10)."""

    channels: int = 42
    blocks: int = 4
    distilled: int = 10
    esa_channels: int = 10
    scale: int = 4


class Conv3X3(nn.Module):
    """A re-parameterised 3x3 conv under the name its training-time wrapper gave it (activation 'linear')."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv3x3 = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3x3(x)


class PlainRFDN(nn.Module):
    """Shallow conv; RFDBs B1..Bn without shallow residual, with PlainRFDN's ESA; the last block's output through a
    3x3 conv + global skip (no fusion of all blocks); pixel shuffle."""

    def __init__(self, *, channels: int, blocks: int, distilled: int, esa_channels: int, scale: int) -> None:
        super().__init__()
        self.fea_conv = nn.Conv2d(3, channels, 3, padding=1)
        self.block_names = [f"B{i}" for i in range(1, blocks + 1)]
        for name in self.block_names:
            self.add_module(name, RFDB(channels, distilled, ParallelESA(channels, esa_channels),
                                       shallow_residual=False, conv3=Conv3X3))
        self.LR_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsampler = upsampler(channels, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) RGB in [0, 255] -> (1, 3, sH, sW) in [0, 255]."""
        shallow = feat = self.fea_conv(x)
        for name in self.block_names:
            feat = getattr(self, name)(feat)
        return self.upsampler(self.LR_conv(feat) + shallow)
