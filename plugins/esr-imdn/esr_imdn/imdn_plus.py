"""IMDN+ (Zheng Hui, NTIRE 2022 ESR team39 "rainbow"; github.com/ofsoundof/NTIRE2022_ESR models/team39_imdn_plus.py),
the released re-parameterized (plain-conv) inference form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .imdn import conv
from .imdn_rtc import Shortcut


class IMDBPlus(nn.Module):
    """Six progressive 3x3 steps, each splitting off a sixth of the channels; SiLU; 1x1 fusion with a skip."""

    def __init__(self, channels: int, distillation_rate: float = 1 / 6):
        super().__init__()
        self.distilled = d = int(channels * distillation_rate)
        self.c1 = conv(channels, channels, 3)
        self.c2 = conv(5 * d, 5 * d, 3)
        self.c3 = conv(4 * d, 4 * d, 3)
        self.c4 = conv(3 * d, 3 * d, 3)
        self.c5 = conv(2 * d, 2 * d, 3)
        self.c6 = conv(d, d, 3)
        self.act = nn.SiLU()
        self.c7 = conv(6 * d, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled, out = [], x
        for step in (self.c1, self.c2, self.c3, self.c4, self.c5):
            out = self.act(step(out))
            distilled.append(out[:, :self.distilled])
            out = out[:, self.distilled:]  # the remaining channels go on to the next step
        distilled.append(self.act(self.c6(out)))
        return self.c7(torch.cat(distilled, dim=1)) + x


@dataclass
class IMDNPlusConfig:
    channels: int = 36
    blocks: int = 8
    scale: int = 4


class IMDNPlus(nn.Module):
    """Feature extraction (3x3 conv, IMDB+ chain and a 3x3 conv under one long skip), then reconstruction
    (pixel-shuffle upsampler). RGB in [0, 1]."""

    def __init__(self, channels: int = 36, blocks: int = 8, scale: int = 4):
        super().__init__()
        trunk = [IMDBPlus(channels) for _ in range(blocks)] + [conv(channels, channels, 3)]
        self.FEM = nn.Sequential(conv(3, channels, 3), Shortcut(nn.Sequential(*trunk)))
        self.RM = nn.Sequential(conv(channels, 3 * scale**2, 3), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.RM(self.FEM(x))
