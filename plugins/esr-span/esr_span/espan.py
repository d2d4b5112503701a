"""ESPAN, Expanded SPAN (NTIRE 2025 ESR team36; Amazingren/NTIRE2025_ESR models/team36_espan.py): a 9x9 stem and a
last SPAB of two convs. The deployed branch keeps the names of the authors' distillation set-up (`teacher_block_seq`,
`tea_*`); it is the whole network, not a separate teacher."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import SPAB, Conv3XC, add_blocks


@dataclass(frozen=True)
class ESPANConfig:
    """Defaults: the challenge model (32 channels, SPAB width 32, 5 three-conv blocks)."""

    channels: int = 32
    mid_channels: int = 32
    blocks: int = 5
    scale: int = 4


class ESPAN(nn.Module):
    """9x9 Conv3XC stem, SPABs block_1..block_n, a two-conv SPAB (teacher_block_seq); a 1x1 conv (tea_conv_cat) over
    the stem's features, tea_conv_2 of the last block's output, the first block's output and the last block's
    output; Conv3XC + pixel shuffle. RGB in [0, 1] in and out, no mean shift."""

    def __init__(self, *, channels: int, mid_channels: int, blocks: int, scale: int) -> None:
        super().__init__()
        self.conv_1 = Conv3XC(3, channels, kernel_size=9)
        self.block_names = add_blocks(self, [SPAB(channels, mid_channels) for _ in range(blocks)])
        self.teacher_block_seq = SPAB(channels, channels, convs=2)
        self.tea_conv_cat = nn.Conv2d(4 * channels, channels, 1)
        self.tea_conv_2 = Conv3XC(channels, channels)
        self.tea_upsampler = nn.Sequential(Conv3XC(channels, 3 * scale**2), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_1(x)
        outs, out = [], feat
        for name in self.block_names:
            out, _ = getattr(self, name)(out)
            outs.append(out)
        last, _ = self.teacher_block_seq(out)
        return self.tea_upsampler(self.tea_conv_cat(torch.cat([feat, self.tea_conv_2(last), outs[0], last], 1)))
