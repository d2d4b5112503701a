"""SMFAN: Zheng, Sun, Dong and Pan, NTIRE 2024 ESR team24, the challenge version of "SMFANet: A Lightweight
Self-Modulation Feature Aggregation Network for Efficient Image Super-Resolution" (ECCV 2024; Zheng-MJ/SMFANet)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from esr_cli import tiling

DOWN = 8
"""SMFA pools its modulation branch to 1/8 of the size."""


@dataclass(frozen=True)
class SMFANConfig:
    dim: int = 24
    n_blocks: int = 8
    ffn_scale: float = 1.5
    scale: int = 4


def spatial_variance(x: torch.Tensor) -> torch.Tensor:
    """`torch.var(x, dim=(2, 3), keepdim=True)` (unbiased) over the whole image, also when tiled. Tiled, the
    factor n / (n - 1) counts the window's pixels, not the image's: off by less than 1 / n (n >= 4096)."""
    _, std = tiling.mean_std(x)
    n = x.shape[-2] * x.shape[-1]
    return std.square() * (n / (n - 1))


class DMlp(nn.Module):
    """Local detail estimation: 3x3 conv grouped per input channel to 2 x channels, 1x1 conv, GELU, 1x1 conv back."""

    def __init__(self, dim: int, growth: float = 2.0):
        super().__init__()
        hidden = int(dim * growth)
        self.conv_0 = nn.Sequential(nn.Conv2d(dim, hidden, 3, 1, 1, groups=dim), nn.Conv2d(hidden, hidden, 1))
        self.act = nn.GELU()
        self.conv_1 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1(self.act(self.conv_0(x)))


class SMFA(nn.Module):
    """Self-modulation feature aggregation: a 1x1 conv splits the features in two halves. One is modulated by its
    own non-local summary (1/8 max-pooled, depth-wise 3x3 conv, plus its spatial variance, 1x1 conv, GELU, nearest
    upsampling); the other goes through DMlp. Their sum, 1x1 conv."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear_0 = nn.Conv2d(dim, dim * 2, 1)
        self.linear_1 = nn.Conv2d(dim, dim, 1)
        self.linear_2 = nn.Conv2d(dim, dim, 1)
        self.lde = DMlp(dim)
        self.dw_conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.gelu = nn.GELU()

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        h, w = f.shape[-2:]
        y, x = self.linear_0(f).chunk(2, dim=1)
        # at least 1 cell (the reference crashes below 8 pixels); the whole image's cells, also when tiled
        summary = self.dw_conv(tiling.adaptive_max_pool(x, DOWN)) + spatial_variance(x)
        modulation = tiling.upsample_nearest(self.gelu(self.linear_1(summary)), (h, w), DOWN)
        return self.linear_2(x * modulation + self.lde(y))


class PCFN(nn.Module):
    """Partial convolution feed-forward: 1x1 conv to `ffn_scale` x channels, GELU; a quarter of those channels go
    through a 3x3 conv and GELU; 1x1 conv back."""

    def __init__(self, dim: int, ffn_scale: float):
        super().__init__()
        hidden = int(dim * ffn_scale)
        self.p_dim = hidden // 4
        self.conv_0 = nn.Conv2d(dim, hidden, 1)
        self.conv_1 = nn.Conv2d(self.p_dim, self.p_dim, 3, 1, 1)
        self.conv_2 = nn.Conv2d(hidden, dim, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv_0(x))
        part, rest = x.split([self.p_dim, x.shape[1] - self.p_dim], dim=1)
        return self.conv_2(torch.cat([self.act(self.conv_1(part)), rest], dim=1))


class FMB(nn.Module):
    """Feature modulation block: SMFA then PCFN, each on the L2-normalised features (over the channels of each
    pixel) and residual."""

    def __init__(self, dim: int, ffn_scale: float):
        super().__init__()
        self.smfa = SMFA(dim)
        self.pcfn = PCFN(dim, ffn_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.smfa(F.normalize(x)) + x
        return self.pcfn(F.normalize(x)) + x


class SMFAN(nn.Module):
    """Bias-free 3x3 conv stem, `n_blocks` FMBs with a long skip, bias-free 3x3 conv + pixel shuffle; RGB in [0, 1]."""

    def __init__(self, dim: int = 24, n_blocks: int = 8, ffn_scale: float = 1.5, scale: int = 4):
        super().__init__()
        self.to_feat = nn.Conv2d(3, dim, 3, 1, 1, bias=False)
        self.feats = nn.Sequential(*(FMB(dim, ffn_scale) for _ in range(n_blocks)))
        self.to_img = nn.Sequential(nn.Conv2d(dim, 3 * scale**2, 3, 1, 1, bias=False), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H*scale, W*scale)."""
        feat = self.to_feat(x)
        return self.to_img(self.feats(feat) + feat)
