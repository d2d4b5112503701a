"""SAFMNv3: "Simple Feature Modulation Network for Real-Time Image Super-Resolution", Sun et al., NTIRE 2025 ESR
team19 (sunny2109/SAFMN, NTIRE2025_ESR/)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from esr_cli import tiling

from .safmnpp import CCM
from .smfan import spatial_variance

DOWN = 8
"""SimpleSAFM pools its modulation branch to 1/8 of the size."""


@dataclass(frozen=True)
class SAFMNv3Config:
    dim: int = 40
    n_blocks: int = 6
    ffn_scale: float = 1.5
    split: int = 12
    """Channels of the modulated branch."""
    scale: int = 4


class SimpleSAFM(nn.Module):
    """Two 3x3 convs: `split` channels are modulated by their own non-local summary (1/8 max-pooled, depth-wise 3x3
    conv, plus their spatial variance, 1x1 conv, bilinear upsampling, GELU), the rest pass; concat, GELU, 1x1 conv."""

    def __init__(self, dim: int, split: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, split, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(dim, dim - split, 3, 1, 1, bias=False)
        self.dwconv = nn.Conv2d(split, split, 3, 1, 1, groups=split, bias=False)
        self.conv3 = nn.Conv2d(split, split, 1, bias=False)
        self.out = nn.Conv2d(dim, dim, 1, bias=False)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x0 = self.conv1(x)
        # at least 1 cell (the reference crashes below 8 pixels). The engine pads to a multiple of 8 and starts
        # windows on it, so that these cells are strided ones and every window's are the whole image's.
        s = self.dwconv(F.adaptive_max_pool2d(x0, (max(h // DOWN, 1), max(w // DOWN, 1))))
        s = tiling.upsample(self.conv3(s + spatial_variance(x0)), (h, w), stride=DOWN)
        return self.out(self.act(torch.cat([self.conv2(x), self.act(s) * x0], dim=1)))


class AttBlock(nn.Module):
    """SimpleSAFM then a 1x1 CCM, one residual around both."""

    def __init__(self, dim: int, ffn_scale: float, split: int):
        super().__init__()
        self.conv1 = SimpleSAFM(dim, split)
        self.conv2 = CCM(dim, ffn_scale, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + x


class SAFMNv3(nn.Module):
    """Bias-free 3x3 conv stem, `n_blocks` AttBlocks, 3x3 conv + pixel shuffle, plus a bilinear upsampling of the
    input; RGB in [0, 1]. No biases anywhere."""

    def __init__(self, dim: int = 40, n_blocks: int = 6, ffn_scale: float = 1.5, split: int = 12, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.to_feat = nn.Conv2d(3, dim, 3, 1, 1, bias=False)
        self.feats = nn.Sequential(*(AttBlock(dim, ffn_scale, split) for _ in range(n_blocks)))
        self.to_img = nn.Sequential(nn.Conv2d(dim, 3 * scale**2, 3, 1, 1, bias=False), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H*scale, W*scale)."""
        skip = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.to_img(self.feats(self.to_feat(x))) + skip
