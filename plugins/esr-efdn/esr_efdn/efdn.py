"""EFDN: Wang, "Edge-enhanced Feature Distillation Network for Efficient Super-Resolution", NTIRE 2022 ESR (team01
NKU-ESR; arXiv 2204.08759), in its deploy form; ref. ofsoundof/NTIRE2022_ESR models/team01_efdn.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from esr_cli import tiling

STRIDE = 6  # of ESA's pooled map: stride-2 conv, then a max-pool with stride 3


@dataclass(frozen=True)
class EFDNConfig:
    channels: int = 48
    scale: int = 4


class PointwisePReLU(nn.Module):
    """1x1 conv and a per-channel PReLU: the first step of a cell."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(channels, channels, 1)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv1x1(x))


class EDBB(nn.Module):
    """Edge-enhanced diverse branch block, re-parameterised: its training-time branches (3x3, 1x1-3x3, Sobel and
    Laplacian edge filters) are folded into one 3x3 `rep_conv`, then a per-channel PReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.rep_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.rep_conv(x))


class ESA(nn.Module):
    """Enhanced spatial attention as in RFDN (channels / 4 inside): a sigmoid mask from a strided, max-pooled branch
    of three 3x3 convs, resized back bilinearly; multiplies the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        f = channels // 4
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv3_ = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        v = F.max_pool2d(self.conv2(reduced), kernel_size=7, stride=3)
        v = F.relu(self.conv3(F.relu(self.conv_max(v))))
        v = tiling.upsample(self.conv3_(v), x.shape[-2:], stride=STRIDE)  # bilinear, as the whole image samples it
        return x * torch.sigmoid(self.conv4(v + self.conv_f(reduced)))


class Cell(nn.Module):
    """1x1 conv + PReLU, two EDBBs; the input and the three outputs each distilled by a 1x1 conv to half the
    channels, concatenated, fused by a 1x1 conv; ESA; residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = PointwisePReLU(channels)
        self.conv2 = EDBB(channels)
        self.conv3 = EDBB(channels)
        self.branch = nn.ModuleList(nn.Conv2d(channels, channels // 2, 1) for _ in range(4))
        self.fuse = nn.Conv2d(channels // 2 * 4, channels, 1)
        self.att = ESA(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(x)
        out2 = self.conv2(out1)
        out3 = self.conv3(out2)
        distilled = [branch(f) for branch, f in zip(self.branch, (x, out1, out2, out3))]
        return self.att(self.fuse(torch.cat(distilled, dim=1))) + x


class EFDN(nn.Module):
    """3x3 head, four cells in the searched topology (cells 3, 4 and the output take 1x1 fusions of earlier
    cells' outputs: [1, 2], [2, 3], [2, 4]), global skip, 3x3 conv + pixel shuffle, output clamped to [0, 1]."""

    def __init__(self, *, channels: int, scale: int) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.cells = nn.ModuleList(Cell(channels) for _ in range(4))
        self.local_fuse = nn.ModuleList(nn.Conv2d(channels * 2, channels, 1) for _ in range(3))
        self.tail = nn.Sequential(nn.Conv2d(channels, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, 3, sH, sW) in [0, 1]."""
        shallow = self.head(x)
        out1 = self.cells[0](shallow)
        out2 = self.cells[1](out1)
        out3 = self.cells[2](self.local_fuse[0](torch.cat([out1, out2], dim=1)))
        out4 = self.cells[3](self.local_fuse[1](torch.cat([out2, out3], dim=1)))
        deep = self.local_fuse[2](torch.cat([out2, out4], dim=1))
        return self.tail(deep + shallow).clamp(0, 1)
