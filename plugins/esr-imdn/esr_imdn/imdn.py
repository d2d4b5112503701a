"""IMDN: Hui et al., "Lightweight Image Super-Resolution with Information Multi-distillation Network" (ACM MM 2019);
module tree of github.com/Zheng222/IMDN model/architecture.py + model/block.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from esr_cli import tiling


def conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """A 'same'-padded convolution (halves the size when stride is 2)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=bias)


class CCA(nn.Module):
    """Contrast-aware channel attention: squeeze by (standard deviation + mean) of each channel."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, contrast = tiling.mean_std(x)  # (B, C, 1, 1), over the whole image, also when tiled
        return x * self.conv_du(contrast + mean)


class FastIMDB(nn.Module):
    """The distillation steps of the IMDB: three 3x3 steps each keep a quarter of the channels (distilled) and refine
    the rest; the four distilled parts are concatenated and fused by a 1x1 conv (the reference's `IMDModule_speed`)."""

    def __init__(self, channels: int, distillation_rate: float = 0.25):
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = channels - self.distilled
        self.c1 = conv(channels, channels, 3)
        self.c2 = conv(self.remaining, channels, 3)
        self.c3 = conv(self.remaining, channels, 3)
        self.c4 = conv(self.remaining, self.distilled, 3)
        self.act = nn.LeakyReLU(0.05)
        self.c5 = conv(self.distilled * 4, channels, 1)

    def distill(self, x: torch.Tensor) -> torch.Tensor:
        split = (self.distilled, self.remaining)
        d1, r1 = self.act(self.c1(x)).split(split, dim=1)
        d2, r2 = self.act(self.c2(r1)).split(split, dim=1)
        d3, r3 = self.act(self.c3(r2)).split(split, dim=1)
        return torch.cat([d1, d2, d3, self.c4(r3)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c5(self.distill(x)) + x


class IMDB(FastIMDB):
    """Information multi-distillation block: the distilled parts are weighted by CCA before the 1x1 fusion."""

    def __init__(self, channels: int, distillation_rate: float = 0.25):
        super().__init__(channels, distillation_rate)
        self.cca = CCA(self.distilled * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c5(self.cca(self.distill(x))) + x


@dataclass
class IMDNConfig:
    channels: int = 64
    blocks: int = 6
    scale: int = 4


class IMDN(nn.Module):
    """The paper's network: a 3x3 conv, a chain of IMDBs whose outputs are all concatenated and fused by a 1x1 conv,
    a 3x3 conv with a long skip, and a pixel-shuffle upsampler. Input RGB in [0, 1]."""

    def __init__(self, channels: int = 64, blocks: int = 6, scale: int = 4):
        super().__init__()
        self.blocks = blocks
        self.fea_conv = conv(3, channels, 3)
        for i in range(1, blocks + 1):
            self.add_module(f"IMDB{i}", IMDB(channels))
        self.c = nn.Sequential(conv(channels * blocks, channels, 1), nn.LeakyReLU(0.05))
        self.LR_conv = conv(channels, channels, 3)
        self.upsampler = nn.Sequential(conv(channels, 3 * scale**2, 3), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.fea_conv(x)
        outputs, out = [], features
        for i in range(1, self.blocks + 1):
            out = getattr(self, f"IMDB{i}")(out)
            outputs.append(out)
        fused = self.c(torch.cat(outputs, dim=1))  # hierarchical feature fusion, (B, C, H, W)
        return self.upsampler(self.LR_conv(fused) + features)
