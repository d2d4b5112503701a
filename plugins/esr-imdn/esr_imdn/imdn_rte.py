"""IMDN-RTE (Hui et al., AI in RTE 2020; github.com/Zheng222/IMDN model/architecture.py IMDN_RTE + model/block.py
IMDModule_Large): works at half resolution (stride-2 conv in, pixel shuffle by 2*scale out); fed RGB in [0, 255]."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .imdn import conv


class LargeIMDB(nn.Module):
    """Six bias-free 3x3 ReLU steps, each splitting off a quarter of the input width; 1x1 fusion with a skip."""

    def __init__(self, channels: int, distillation_rate: float = 0.25):
        super().__init__()
        self.distilled = d = int(channels * distillation_rate)
        r = channels - d
        self.c1 = conv(channels, channels, 3, bias=False)
        self.c2 = conv(r, channels, 3, bias=False)
        self.c3 = conv(r, channels, 3, bias=False)
        self.c4 = conv(r, r, 3, bias=False)
        self.c5 = conv(r - d, r - d, 3, bias=False)
        self.c6 = conv(d, d, 3, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.c7 = conv(6 * d, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled, out = [], x
        for step in (self.c1, self.c2, self.c3, self.c4, self.c5):
            out = self.act(step(out))
            distilled.append(out[:, :self.distilled])
            out = out[:, self.distilled:]
        distilled.append(self.act(self.c6(out)))
        return self.c7(torch.cat(distilled, dim=1)) + x


@dataclass
class IMDNRTEConfig:
    channels: int = 20
    blocks: int = 6
    scale: int = 2


class IMDNRTE(nn.Module):
    """3x3 conv, ReLU, stride-2 3x3 conv; LargeIMDB chain; 1x1 conv with a long skip; pixel shuffle by 2*scale."""

    def __init__(self, channels: int = 20, blocks: int = 6, scale: int = 2):
        super().__init__()
        self.blocks = blocks
        self.fea_conv = nn.Sequential(
            conv(3, channels, 3), nn.ReLU(inplace=True), conv(channels, channels, 3, stride=2, bias=False))
        for i in range(1, blocks + 1):
            self.add_module(f"block{i}", LargeIMDB(channels))
        self.LR_conv = conv(channels, channels, 1, bias=False)
        self.upsampler = nn.Sequential(conv(channels, 3 * (2 * scale) ** 2, 3), nn.PixelShuffle(2 * scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.fea_conv(x)  # (B, C, H/2, W/2)
        out = features
        for i in range(1, self.blocks + 1):
            out = getattr(self, f"block{i}")(out)
        return self.upsampler(self.LR_conv(out) + features)
