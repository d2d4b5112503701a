"""IMDN-RTC (Hui et al., AI in RTC 2019 winner, github.com/Zheng222/IMDN model/architecture.py IMDN_RTC) and the
NTIRE 2022 ESR IMDN baseline (github.com/ofsoundof/NTIRE2022_ESR models/imdn_baseline.py): IMDN without CCA and
without the hierarchical fusion, in the Sequential module tree of the RTC checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .imdn import FastIMDB, conv


class Shortcut(nn.Module):
    """x + sub(x): the long skip over the whole trunk."""

    def __init__(self, sub: nn.Module):
        super().__init__()
        self.sub = sub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sub(x)


@dataclass
class IMDNRTCConfig:
    channels: int = 12
    blocks: int = 5
    scale: int = 2


class IMDNRTC(nn.Module):
    """3x3 conv, a chain of FastIMDBs closed by a conv under one long skip, pixel-shuffle upsampler. RGB in [0, 1]."""

    def __init__(self, channels: int = 12, blocks: int = 5, scale: int = 2, trunk_kernel: int = 1):
        super().__init__()
        trunk = [FastIMDB(channels) for _ in range(blocks)] + [conv(channels, channels, trunk_kernel)]
        self.model = nn.Sequential(
            conv(3, channels, 3),
            Shortcut(nn.Sequential(*trunk)),
            conv(channels, 3 * scale**2, 3),
            nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@dataclass
class IMDNBaselineConfig:
    channels: int = 64
    blocks: int = 8
    scale: int = 4


class IMDNBaseline(IMDNRTC):
    """The NTIRE 2022 ESR baseline (KAIR's `IMDN`): the RTC network at 64 channels, 8 blocks, with a 3x3 conv (not
    1x1) closing the trunk."""

    def __init__(self, channels: int = 64, blocks: int = 8, scale: int = 4):
        super().__init__(channels, blocks, scale, trunk_kernel=3)
