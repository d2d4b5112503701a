"""SPAN-F (NTIRE 2025 ESR team24; Amazingren/NTIRE2025_ESR models/team24_SPANF.py): SPAN without the mean shift or
stem, with a nearest-neighbour shortcut of the input into the tail."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import SPAB, Conv3XC, add_blocks, nearest_shortcut


@dataclass(frozen=True)
class SPANFConfig:
    """Defaults: the challenge model (32 channels, 5 blocks)."""

    channels: int = 32
    blocks: int = 5
    scale: int = 4


class SPANF(nn.Module):
    """block_1 maps the image to `channels` (ungated), SPABs block_2..block_n; a 1x1 conv (conv_cat) over the
    nearest-neighbour shortcut (conv_near), the last and the first block's outputs; conv_2 to 3 * scale**2 maps,
    pixel shuffle. RGB in [0, 1] in and out."""

    def __init__(self, *, channels: int, blocks: int, scale: int) -> None:
        super().__init__()
        shuffled = 3 * scale**2
        self.conv_near = nearest_shortcut(scale)
        self.block_names = add_blocks(self, [SPAB(3, channels, channels)]
                                      + [SPAB(channels, channels) for _ in range(blocks - 1)])
        self.conv_cat = nn.Conv2d(shuffled + 2 * channels, channels, 1)
        self.conv_2 = Conv3XC(channels, shuffled)
        self.depth_to_space = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs, out = [], x
        for name in self.block_names:
            out, _ = getattr(self, name)(out)
            outs.append(out)
        out = self.conv_cat(torch.cat([self.conv_near(x), out, outs[0]], 1))
        return self.depth_to_space(self.conv_2(out))
