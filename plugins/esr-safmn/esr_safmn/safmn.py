"""SAFMN: Sun et al., "Spatially-Adaptive Feature Modulation for Efficient Image Super-Resolution", ICCV 2023 (sunny2109/SAFMN)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from esr_cli import tiling
from esr_cli.layers import LayerNorm2d


@dataclass(frozen=True)
class SAFMNConfig:
    dim: int = 36
    n_blocks: int = 8
    ffn_scale: float = 2.0
    grn: bool = False
    """True: the NTIRE 2023 ESR variant (team15): a GRN after the stem replaces the blocks' LayerNorms, the blocks have
    no biases, SAFM pools from 1/4 instead of 1/2, and a bilinear upsampling of the input is the global skip."""
    scale: int = 4


class GRN(nn.Module):
    """Global Response Normalization (ConvNeXt V2): channels reweighted by their relative spatial L2 norm."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = tiling.l2_norm(x)  # (B, C, 1, 1), over the whole image, also when tiled
        nx = gx / (gx.mean(dim=1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class SAFM(nn.Module):
    """Spatially-adaptive feature modulation: channel chunks max-pooled to 1, 1/2, 1/4, 1/8 of the size (1, 1/4, 1/8,
    1/16 when `coarse`), each through a depth-wise conv, upsampled, aggregated; its GELU modulates the input."""

    def __init__(self, dim: int, n_levels: int = 4, bias: bool = True, coarse: bool = False):
        super().__init__()
        chunk = dim // n_levels
        self.n_levels = n_levels
        self.first_pool = 4 if coarse else 2
        self.mfr = nn.ModuleList(nn.Conv2d(chunk, chunk, 3, 1, 1, groups=chunk, bias=bias) for _ in range(n_levels))
        self.aggr = nn.Conv2d(dim, dim, 1, bias=bias)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        chunks = x.chunk(self.n_levels, dim=1)
        out = [self.mfr[0](chunks[0])]
        for i in range(1, self.n_levels):
            factor = self.first_pool * 2 ** (i - 1)
            # at least 1 cell (the reference crashes on inputs smaller than the coarsest level); the image's cells
            s = tiling.adaptive_max_pool(chunks[i], factor)
            out.append(tiling.upsample_nearest(self.mfr[i](s), (h, w), factor))
        return self.act(self.aggr(torch.cat(out, dim=1))) * x


class CCM(nn.Module):
    """Convolutional channel mixer: 3x3 conv to `ffn_scale` x channels, GELU, 1x1 conv back."""

    def __init__(self, dim: int, ffn_scale: float, bias: bool = True):
        super().__init__()
        hidden = int(dim * ffn_scale)
        self.ccm = nn.Sequential(nn.Conv2d(dim, hidden, 3, 1, 1, bias=bias), nn.GELU(),
                                 nn.Conv2d(hidden, dim, 1, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ccm(x)


class AttBlock(nn.Module):
    """Feature mixing module: SAFM then CCM, each residual (LayerNorm first, in the paper's model)."""

    def __init__(self, dim: int, ffn_scale: float, grn: bool):
        super().__init__()
        if not grn:
            self.norm1 = LayerNorm2d(dim)
            self.norm2 = LayerNorm2d(dim)
        self.safm = SAFM(dim, bias=not grn, coarse=grn)
        self.ccm = CCM(dim, ffn_scale, bias=not grn)
        self.grn = grn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grn:
            x = self.safm(x) + x
            return self.ccm(x) + x
        x = self.safm(self.norm1(x)) + x
        return self.ccm(self.norm2(x)) + x


class SAFMN(nn.Module):
    """3x3 conv stem, `n_blocks` AttBlocks, 3x3 conv + pixel shuffle; input and output RGB in [0, 1]."""

    def __init__(self, dim: int = 36, n_blocks: int = 8, ffn_scale: float = 2.0, grn: bool = False, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.grn = grn
        if grn:
            self.norm = GRN(dim)
        self.to_feat = nn.Conv2d(3, dim, 3, 1, 1)
        self.feats = nn.Sequential(*(AttBlock(dim, ffn_scale, grn) for _ in range(n_blocks)))
        self.to_img = nn.Sequential(nn.Conv2d(dim, 3 * scale**2, 3, 1, 1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H*scale, W*scale)."""
        if not self.grn:
            feat = self.to_feat(x)
            return self.to_img(self.feats(feat) + feat)
        skip = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.to_img(self.feats(self.norm(self.to_feat(x)))) + skip
