"""SPANV2 (NTIRE 2026 ESR team22, XiaomiMM; Amazingren/NTIRE2026_ESR models/team22_SPANV2_ESR.py, class
SPANV2_ESR): SPAN-F's layout with ReLU blocks, bias-free convs and a learnt guidance map instead of the
parameter-free attention, and a depth-wise + point-wise tail. This is the file's pure-PyTorch attention path
(use_span_attn=False); its CUDA operator computes the same formula for speed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import add_blocks, nearest_shortcut


@dataclass(frozen=True)
class SPANV2Config:
    """Defaults: the challenge model C2 (32 channels, 5 blocks)."""

    channels: int = 32
    blocks: int = 5
    scale: int = 4


class Conv3X(nn.Module):
    """SPANV2's re-parameterised 3x3 conv as deployed: bias-free, under the name `conv`."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SPABV2(nn.Module):
    """Three convs c1, c2, c3 with ReLU between; the output f3 is guided by a 1x1 conv of itself (no sigmoid):
    (x + f3) * guidance_map_conv(f3). A block that changes the width (the first, 3 -> C) ends with a ReLU instead."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.c1 = Conv3X(in_channels, channels)
        self.c2 = Conv3X(channels, channels)
        self.c3 = Conv3X(channels, channels)
        self.guided = in_channels == channels
        if self.guided:
            self.guidance_map_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f3 = self.c3(F.relu(self.c2(F.relu(self.c1(x)))))
        return (x + f3) * self.guidance_map_conv(f3) if self.guided else F.relu(f3)


class SPANV2(nn.Module):
    """block_1 (3 -> C), guided blocks block_2..block_n; the last block's output beside the nearest-neighbour
    shortcut (conv_near, learnt here), through a depth-wise 3x3 and a point-wise 1x1 conv to 3 * scale**2 maps,
    pixel shuffle. RGB in [0, 1] in and out."""

    def __init__(self, *, channels: int, blocks: int, scale: int) -> None:
        super().__init__()
        shuffled = 3 * scale**2
        self.block_names = add_blocks(self, [SPABV2(3, channels)] + [SPABV2(channels, channels)
                                                                       for _ in range(blocks - 1)])
        self.conv_near = nearest_shortcut(scale)
        cat = shuffled + channels
        self.depthwise_conv = nn.Conv2d(cat, cat, 3, padding=1, groups=cat, bias=False)
        self.pointwise_conv = nn.Conv2d(cat, shuffled, 1, bias=False)
        self.depth_to_space = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for name in self.block_names:
            out = getattr(self, name)(out)
        out = self.pointwise_conv(self.depthwise_conv(torch.cat([self.conv_near(x), out], 1)))
        return self.depth_to_space(out)
