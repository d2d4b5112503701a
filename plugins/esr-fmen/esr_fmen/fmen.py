"""FMEN: Du et al., "Fast and Memory-Efficient Network Towards Efficient Image Super-Resolution", CVPRW 2022
(arXiv 2204.08397); ref. NJU-Jet/FMEN and ofsoundof/NTIRE2022_ESR models/team03_fmen.py.

The deploy graph: plain 3x3 convs, LeakyReLU(0.1), one addition, sigmoid gates. Training-time branches (the RRRB's
1x1-3x3-1x1 with its two identities, the HFAB's batch norms) are folded into these convs by re-parameterisation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class FMENConfig:
    """Defaults: FMEN-S, the NTIRE 2022 ESR entry (50 channels, 4 stages)."""

    channels: int = 50
    mid_channels: int = 16
    """Width of each stage's HFAB."""
    warmup_mid_channels: int = 12
    """Width of the warm-up HFAB (the authors' code: mid_channels - 4)."""
    warmup_erbs: int = 2
    """ERBs inside the warm-up HFAB."""
    stage_erbs: tuple[int, ...] = (1, 1, 1, 1)
    """One entry per [ERB, HFAB] stage: the ERBs inside that stage's HFAB."""
    scale: int = 4


def conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


class RepConv(nn.Module):
    """The re-parameterised RRRB (residual-in-residual re-parameterisable block): one 3x3 conv, `rep_conv`, holding
    the training-time 1x1 expand, 3x3, 1x1 reduce and both identities."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.rep_conv = conv3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rep_conv(x)


class ERB(nn.Module):
    """Enhanced residual block: RRRB, LeakyReLU, RRRB (its residuals live inside the fused convs)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = RepConv(channels)
        self.conv2 = RepConv(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(lrelu(self.conv1(x)))


class HFAB(nn.Module):
    """High-frequency attention block: 3x3 squeeze to `mid` channels, LeakyReLU, ERBs, LeakyReLU, 3x3 excitation
    back to `channels`, sigmoid; the gate multiplies the input."""

    def __init__(self, channels: int, mid: int, erbs: int) -> None:
        super().__init__()
        self.squeeze = conv3(channels, mid)
        self.convs = nn.Sequential(*(ERB(mid) for _ in range(erbs)))
        self.excitate = conv3(mid, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = lrelu(self.convs(lrelu(self.squeeze(x))))
        return x * torch.sigmoid(self.excitate(attention))


class FMEN(nn.Module):
    """Head conv; warm-up (3x3 conv, HFAB); stages of [ERB, HFAB]; 3x3 conv plus the head's features; 3x3 conv to
    3 * scale**2 channels and pixel shuffle. RGB in [0, 255] in and out, no mean shift."""

    def __init__(self, *, channels: int, mid_channels: int, warmup_mid_channels: int, warmup_erbs: int,
                 stage_erbs: tuple[int, ...], scale: int) -> None:
        super().__init__()
        self.head = conv3(3, channels)
        self.warmup = nn.Sequential(conv3(channels, channels), HFAB(channels, warmup_mid_channels, warmup_erbs))
        self.basic_blocks = nn.ModuleList(ERB(channels) for _ in stage_erbs)
        self.hfabs = nn.ModuleList(HFAB(channels, mid_channels, erbs) for erbs in stage_erbs)
        self.lr_conv = conv3(channels, channels)
        self.tail = nn.Sequential(conv3(channels, 3 * scale**2), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 255] -> (B, 3, sH, sW) in [0, 255]."""
        shallow = self.head(x)
        h = self.warmup(shallow)
        for erb, hfab in zip(self.basic_blocks, self.hfabs):
            h = hfab(erb(h))
        return self.tail(self.lr_conv(h) + shallow)
