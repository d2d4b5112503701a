"""RFDN: Liu et al., "Residual Feature Distillation Network for Lightweight Image SR" (ECCVW 2020); ref. njulj/RFDN.
Also MegSR's pruned RFDN (NTIRE 2022 ESR, ofsoundof/NTIRE2022_ESR models/team40_rfdn_pruned.py): the same tensors,
but its distillation steps have no shallow residual."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .esa import ESA


@dataclass(frozen=True)
class RFDNConfig:
    """Defaults: the authors' released model (E-RFDN, AIM 2020 winner); the paper's table model (0.55M) is larger."""

    channels: int = 50
    blocks: int = 4
    esa_channels: int = 12
    scale: int = 4
    shallow_residual: bool = True
    """Each refinement adds its input (SRB). Not in the tensors: each architecture's config fixes it."""


@dataclass(frozen=True)
class RFDNPruneConfig(RFDNConfig):
    """MegSR's pruned RFDN: 40 channels, ESA width 12 (hard-coded 50 // 4 upstream), the identity of each shallow
    residual folded into its 3x3 weights."""

    channels: int = 40
    shallow_residual: bool = False


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.05)


def conv3x3(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class RFDB(nn.Module):
    """Residual feature distillation block: `steps` (1x1 distill c{i}_d, 3x3 refine c{i}_r) steps, a 3x3 tail (c4),
    concatenation of the distilled maps, 1x1 fusion (c5) and a spatial attention.

    AIM 2020 RFDN's refinement is a shallow residual block, lrelu(c_r(x) + x); the NTIRE 2022 variants (pruned RFDN,
    RePAFDN, PlainRFDN) fold that identity into the 3x3 weights: lrelu(c_r(x))."""

    def __init__(self, channels: int, distilled: int, esa: nn.Module, steps: int = 3, shallow_residual: bool = True,
                 conv3: Callable[[int, int], nn.Module] = conv3x3) -> None:
        super().__init__()
        self.steps = [(f"c{i}_d", f"c{i}_r") for i in range(1, steps + 1)]
        for distill, refine in self.steps:
            self.add_module(distill, nn.Conv2d(channels, distilled, 1))
            self.add_module(refine, conv3(channels, channels))
        self.c4 = conv3(channels, distilled)
        self.c5 = nn.Conv2d(distilled * (steps + 1), channels, 1)
        self.esa = esa
        self.shallow_residual = shallow_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled = []
        for distill, refine in self.steps:
            distilled.append(lrelu(getattr(self, distill)(x)))
            refined = getattr(self, refine)(x)
            x = lrelu(refined + x if self.shallow_residual else refined)
        distilled.append(lrelu(self.c4(x)))
        return self.esa(self.c5(torch.cat(distilled, dim=1)))


def upsampler(channels: int, scale: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))


class RFDN(nn.Module):
    """Shallow conv, RFDBs B1..Bn, 1x1 fusion of every block's output (c), 3x3 conv + global skip, pixel shuffle."""

    def __init__(self, *, channels: int, blocks: int, esa_channels: int, scale: int, shallow_residual: bool) -> None:
        super().__init__()
        self.fea_conv = nn.Conv2d(3, channels, 3, padding=1)
        self.block_names = [f"B{i}" for i in range(1, blocks + 1)]
        for name in self.block_names:
            self.add_module(name, RFDB(channels, channels // 2, ESA(channels, esa_channels, group_convs=3),
                                       shallow_residual=shallow_residual))
        self.c = nn.Sequential(nn.Conv2d(channels * blocks, channels, 1), nn.LeakyReLU(0.05))
        self.LR_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.upsampler = upsampler(channels, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) RGB in [0, 255] -> (1, 3, sH, sW) in [0, 255]."""
        shallow = self.fea_conv(x)
        outs, feat = [], shallow
        for name in self.block_names:
            feat = getattr(self, name)(feat)
            outs.append(feat)
        feat = self.LR_conv(self.c(torch.cat(outs, dim=1))) + shallow
        return self.upsampler(feat)
