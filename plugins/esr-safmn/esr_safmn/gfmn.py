"""GFMN: gated feature modulation network, Sun et al., NTIRE 2023 ESR challenge team14 (sunny2109/SAFMN, NTIRE2023_ESR/)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from esr_cli.layers import LayerNorm2d

from .safmn import SAFM


@dataclass(frozen=True)
class GFMNConfig:
    dim: int = 36
    n_blocks: int = 8
    ffn_scale: float = 2.0
    scale: int = 4


class GDFN(nn.Module):
    """Gated depth-wise feed-forward (Restormer), without the GELU: 1x1 conv to 2 x hidden, 3x3 depth-wise conv,
    one half gates the other, 1x1 conv back."""

    def __init__(self, dim: int, ffn_scale: float):
        super().__init__()
        hidden = int(dim * ffn_scale)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, 1, 1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(x1 * x2)


class AttBlock(nn.Module):
    """LayerNorm -> SAFM (pooling from 1/4) and LayerNorm -> GDFN, each residual."""

    def __init__(self, dim: int, ffn_scale: float):
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.norm2 = LayerNorm2d(dim)
        self.safm = SAFM(dim, coarse=True)
        self.ffd = GDFN(dim, ffn_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.safm(self.norm1(x)) + x
        return self.ffd(self.norm2(x)) + x


class GFMN(nn.Module):
    """3x3 conv stem, `n_blocks` AttBlocks with a long skip, 3x3 conv + pixel shuffle; RGB in [0, 1]."""

    def __init__(self, dim: int = 36, n_blocks: int = 8, ffn_scale: float = 2.0, scale: int = 4):
        super().__init__()
        self.to_feat = nn.Conv2d(3, dim, 3, 1, 1)
        self.feats = nn.Sequential(*(AttBlock(dim, ffn_scale) for _ in range(n_blocks)))
        self.to_img = nn.Sequential(nn.Conv2d(dim, 3 * scale**2, 3, 1, 1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H*scale, W*scale)."""
        feat = self.to_feat(x)
        return self.to_img(self.feats(feat) + feat)
