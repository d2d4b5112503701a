"""SAFMN++: "Improved Feature Modulation Network for Efficient Image Super-Resolution", NTIRE 2024 ESR team23 (sunny2109/SAFMN, NTIRE2024_ESR/)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SAFMNPPConfig:
    dim: int = 36
    n_blocks: int = 6
    ffn_scale: float = 1.5
    scale: int = 4


class SimpleSAFM(nn.Module):
    """3x3 conv, then one channel chunk is modulated by its own x8-downsampled depth-wise conv; concat, GELU, 1x1 conv."""

    def __init__(self, dim: int, ratio: int = 3):
        super().__init__()
        self.chunk = dim // ratio
        self.proj = nn.Conv2d(dim, dim, 3, 1, 1, bias=False)
        self.dwconv = nn.Conv2d(self.chunk, self.chunk, 3, 1, 1, groups=self.chunk, bias=False)
        self.out = nn.Conv2d(dim, dim, 1, bias=False)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x0, x1 = self.proj(x).split([self.chunk, x.shape[1] - self.chunk], dim=1)
        # at least 1 pixel: the reference crashes on inputs smaller than 8
        s = F.adaptive_max_pool2d(x0, (max(h // 8, 1), max(w // 8, 1)))
        s = F.interpolate(self.dwconv(s), size=(h, w), mode="bilinear", align_corners=False)
        x0 = self.act(s) * x0
        return self.out(self.act(torch.cat([x1, x0], dim=1)))


class CCM(nn.Module):
    """Convolutional channel mixer: 3x3 conv (1x1 in SAFMNv3) to `ffn_scale` x channels, GELU, 1x1 conv back."""

    def __init__(self, dim: int, ffn_scale: float, kernel: int = 3):
        super().__init__()
        hidden = int(dim * ffn_scale)
        self.conv1 = nn.Conv2d(dim, hidden, kernel, 1, kernel // 2, bias=False)
        self.conv2 = nn.Conv2d(hidden, dim, 1, bias=False)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x)))


class AttBlock(nn.Module):
    """Feature mixing module: SimpleSAFM then CCM, one residual around both."""

    def __init__(self, dim: int, ffn_scale: float):
        super().__init__()
        self.conv1 = SimpleSAFM(dim)
        self.conv2 = CCM(dim, ffn_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + x


class SAFMNPP(nn.Module):
    """Bias-free 3x3 conv stem, `n_blocks` AttBlocks, 3x3 conv + pixel shuffle, plus a bilinear upsampling of the
    input; RGB in [0, 1]."""

    def __init__(self, dim: int = 36, n_blocks: int = 6, ffn_scale: float = 1.5, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.to_feat = nn.Conv2d(3, dim, 3, 1, 1, bias=False)
        self.feats = nn.Sequential(*(AttBlock(dim, ffn_scale) for _ in range(n_blocks)))
        self.to_img = nn.Sequential(nn.Conv2d(dim, 3 * scale**2, 3, 1, 1, bias=False), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H*scale, W*scale)."""
        skip = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.to_img(self.feats(self.to_feat(x))) + skip
