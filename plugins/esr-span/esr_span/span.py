"""SPAN as the NTIRE 2024 ESR entries deploy it (class SPAN30 of Amazingren/NTIRE2024_ESR models/team38_SPAN.py,
the same graph as hongyuanyu/SPAN's SPAN); also DSCF (NTIRE 2025 ESR team23), a SPAN-tiny fine-tuned with merged
ConvLoRA."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import SPAB, Conv3XC, add_blocks

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K


@dataclass(frozen=True)
class SPANConfig:
    """Defaults: the paper's SPAN (48 channels, 6 SPAB); the NTIRE 2024 entries have 28 (SPAN) and 26 (SPAN-tiny)."""

    channels: int = 48
    blocks: int = 6
    scale: int = 4


class SPAN(nn.Module):
    """Mean shift and x255, Conv3XC stem, SPABs block_1..block_n, then a 1x1 conv (conv_cat) over the stem's
    features, conv_2 of the last block's output, the first block's output and the last block's first activation;
    3x3 conv + pixel shuffle. Input RGB in [0, 1]; the output is [0, 1] with no mean added back (trained so)."""

    def __init__(self, *, channels: int, blocks: int, scale: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.conv_1 = Conv3XC(3, channels)
        self.block_names = add_blocks(self, [SPAB(channels, channels) for _ in range(blocks)])
        self.conv_cat = nn.Conv2d(4 * channels, channels, 1)
        self.conv_2 = Conv3XC(channels, channels)
        self.upsampler = nn.Sequential(nn.Conv2d(channels, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_1((x - self.mean) * 255)
        outs, out = [], feat
        for name in self.block_names:
            out, first = getattr(self, name)(out)
            outs.append(out)
        return self.upsampler(self.conv_cat(torch.cat([feat, self.conv_2(out), outs[0], first], 1)))
