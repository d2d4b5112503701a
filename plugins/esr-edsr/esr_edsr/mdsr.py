"""MDSR, Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution" (CVPRW 2017); keys match sanghyun-son/EDSR-PyTorch."""

from __future__ import annotations

import torch
from torch import nn

from .edsr import MeanShift, ResBlock, Upsampler, conv

BRANCH_SCALES = (2, 3, 4)
"""The scale-specific branches of one MDSR network, in the authors' order (`--scale 2+3+4`)."""


class PreProcess(nn.Sequential):
    """Scale-specific pre-processing module: two residual blocks with 5x5 kernels (paper Fig. 6)."""

    def __init__(self, n_feats: int):
        super().__init__(ResBlock(n_feats, kernel_size=5), ResBlock(n_feats, kernel_size=5))


class MDSR(nn.Module):
    """One shared residual body between per-scale pre-processing modules and upsamplers; `scale` picks the branch."""

    def __init__(self, scale: int = 4, n_resblocks: int = 80, n_feats: int = 64):
        super().__init__()
        if scale not in BRANCH_SCALES:
            raise ValueError(f"MDSR has branches for scales {BRANCH_SCALES}, not {scale}")
        self.branch = BRANCH_SCALES.index(scale)
        self.sub_mean = MeanShift(sign=-1)
        self.add_mean = MeanShift(sign=1)
        self.head = nn.Sequential(conv(3, n_feats))
        self.pre_process = nn.ModuleList([PreProcess(n_feats) for _ in BRANCH_SCALES])
        self.body = nn.Sequential(*[ResBlock(n_feats) for _ in range(n_resblocks)], conv(n_feats, n_feats))
        self.upsample = nn.ModuleList([Upsampler(s, n_feats) for s in BRANCH_SCALES])
        self.tail = nn.Sequential(conv(n_feats, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 255] -> (B, 3, H*scale, W*scale) in [0, 255]."""
        x = self.pre_process[self.branch](self.head(self.sub_mean(x)))
        x = x + self.body(x)
        return self.add_mean(self.tail(self.upsample[self.branch](x)))
