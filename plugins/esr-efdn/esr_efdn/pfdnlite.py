"""PFDNLite: Wang et al., "Lightening Partial Feature Distillation Network for Efficient Super-Resolution", NTIRE 2024
ESR team01; ref. Amazingren/NTIRE2024_ESR models/team01_PFDNLITE.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from esr_cli import tiling

ATTENTION_CHANNELS = 16
STRIDE = 6  # of the attention's pooled map: a max-pool with stride 3, then a stride-2 conv
MIN_SIZE = 7  # the 7x7 max-pool has no padding


@dataclass(frozen=True)
class PFDNLiteConfig:
    """Defaults: the NTIRE 2024 model, 48 channels, four blocks of which the middle two are pruned."""

    channels: int = 48
    pruned: tuple[bool, ...] = (False, True, True, False)
    """One entry per block: True where the block's first conv produces only the partial half of the channels."""
    scale: int = 4


class LocalAttention(nn.Module):
    """An importance map at 1/6 resolution (1x1 conv, 7x7 max-pool stride 3, 3x3 conv stride 2, 3x3 conv, sigmoid),
    resized back bilinearly, times the sigmoid of the first channel; multiplies the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        f = ATTENTION_CHANNELS
        self.body = nn.Sequential(nn.Conv2d(channels, f, 1), nn.MaxPool2d(7, stride=3),
                                  nn.Conv2d(f, f, 3, stride=2, padding=1), nn.Conv2d(f, channels, 3, padding=1),
                                  nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(x[:, :1])
        importance = tiling.upsample(self.body(x), x.shape[-2:], stride=STRIDE)  # as the whole image samples it
        return importance * gate * x


class PFDB(nn.Module):
    """Partial feature distillation block (lite): local attention; a 3x3 conv; a partial 3x3 conv that rewrites the
    first half of the channels and passes the rest; a 3x3 conv; SiLU after each conv; residual from the attention.
    Pruned, the first conv is itself the partial one: it writes the first half from all channels."""

    def __init__(self, channels: int, pruned: bool) -> None:
        super().__init__()
        self.half = channels // 2
        self.pruned = pruned
        self.attn = LocalAttention(channels)
        self.conv1 = nn.Conv2d(channels, self.half if pruned else channels, 3, padding=1)
        if not pruned:
            self.conv2 = nn.Conv2d(self.half, self.half, 3, padding=1)
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(x)
        if self.pruned:
            y = torch.cat([F.silu(self.conv1(x)), x[:, self.half:]], dim=1)
        else:
            y = F.silu(self.conv1(x))
            y = torch.cat([F.silu(self.conv2(y[:, :self.half])), y[:, self.half:]], dim=1)
        return F.silu(self.conv3(y)) + x


class PFDNLite(nn.Module):
    """3x3 head, PFDBs block1..blockN, 3x3 tail to 3 * scale**2 channels plus the input repeated scale**2 times per
    channel, pixel shuffle: the global skip is nearest-neighbour upsampling."""

    def __init__(self, *, channels: int, pruned: tuple[bool, ...], scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.block_names = [f"block{i}" for i in range(1, len(pruned) + 1)]
        for name, p in zip(self.block_names, pruned):
            self.add_module(name, PFDB(channels, p))
        self.tail = nn.Sequential(nn.Conv2d(channels, 3 * scale**2, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, 3, sH, sW)."""
        feat = self.head(x)
        for name in self.block_names:
            feat = getattr(self, name)(feat)
        shortcut = x.repeat_interleave(self.scale**2, dim=1)
        return F.pixel_shuffle(self.tail(feat) + shortcut, self.scale)
