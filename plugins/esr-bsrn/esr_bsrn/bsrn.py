"""BSRN-S: Li et al., "Blueprint Separable Residual Network for Efficient Image Super-Resolution" (CVPRW 2022), the
small variant that XPixel submitted to NTIRE 2022 ESR (ofsoundof/NTIRE2022_ESR models/team18_bsrn.py).

Every 1x1 layer of this variant is an `nn.Linear` over the channels of each pixel (2-D weights); the paper's main
BSRN uses 1x1 convs, a CCA in each block and no per-block scale, so it has another layout (see the README).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from esr_cli import tiling

ESA_STRIDE = 6  # of ESA's pooled map: a stride-2 conv, then a max-pool with stride 3


@dataclass(frozen=True)
class BSRNSConfig:
    """Defaults: the NTIRE 2022 entry (48 channels, 5 blocks)."""

    channels: int = 48
    blocks: int = 5
    scale: int = 4


class PixelLinear(nn.Linear):
    """A 1x1 conv stored as `nn.Linear`: applied channels-last to each pixel of a (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class BSConvU(nn.Module):
    """Blueprint separable conv, unconstrained: pointwise across channels, then a depthwise 3x3."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pw = PixelLinear(in_channels, out_channels)
        self.dw = nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw(self.pw(x))


class ESA(nn.Module):
    """Enhanced spatial attention: a sigmoid mask from a strided, max-pooled branch of channels / 4 (BSConvU group
    with GELU), resized back and added to a pointwise branch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        f = channels // 4
        self.conv1 = PixelLinear(channels, f)
        self.conv_f = PixelLinear(f, f)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2)
        self.conv_max = BSConvU(f, f)
        self.conv3 = BSConvU(f, f)
        self.conv3_ = BSConvU(f, f)
        self.conv4 = PixelLinear(f, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        v = F.max_pool2d(self.conv2(reduced), kernel_size=7, stride=3)
        v = self.conv3_(F.gelu(self.conv3(F.gelu(self.conv_max(v)))))
        v = tiling.upsample(v, x.shape[-2:], stride=ESA_STRIDE)  # bilinear, as the whole image samples it
        return x * torch.sigmoid(self.conv4(v + self.conv_f(reduced)))


class ESDB(nn.Module):
    """Efficient separable distillation block: three steps of (pointwise distillation to channels / 2, BSConvU
    refinement with a residual), a BSConvU tail, pointwise fusion (c5), ESA, a learnt per-channel scale (cw),
    a pointwise output layer and the block's residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        distilled = channels // 2
        for i in (1, 2, 3):
            self.add_module(f"c{i}_d", PixelLinear(channels, distilled))
            self.add_module(f"c{i}_r", BSConvU(channels, channels))
        self.c4 = BSConvU(channels, distilled)
        self.c5 = PixelLinear(distilled * 4, channels)
        self.esa = ESA(channels)
        self.cw = nn.Parameter(torch.ones(1, channels))
        self.conv_out = PixelLinear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled, feat = [], x
        for distill, refine in ((self.c1_d, self.c1_r), (self.c2_d, self.c2_r), (self.c3_d, self.c3_r)):
            distilled.append(F.gelu(distill(feat)))
            feat = F.gelu(refine(feat) + feat)
        distilled.append(F.gelu(self.c4(feat)))
        fused = self.esa(self.c5(torch.cat(distilled, dim=1)))
        return self.conv_out(fused * self.cw[:, :, None, None]) + x


class Upsampler(nn.Module):
    """3x3 conv to 3 * scale**2 channels, pixel shuffle (the authors' PixelShuffleDirect)."""

    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        self.upsampleOneStep = nn.Sequential(nn.Conv2d(channels, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampleOneStep(x)


class BSRNS(nn.Module):
    """The input repeated 4 times along channels, BSConvU stem, ESDBs B1..Bn, pointwise fusion of every block's
    output (c1) + GELU, BSConvU (c2) + global skip, upsampler."""

    def __init__(self, *, channels: int, blocks: int, scale: int) -> None:
        super().__init__()
        self.fea_conv = BSConvU(3 * 4, channels)
        self.block_names = [f"B{i}" for i in range(1, blocks + 1)]
        for name in self.block_names:
            self.add_module(name, ESDB(channels))
        self.c1 = PixelLinear(channels * blocks, channels)
        self.c2 = BSConvU(channels, channels)
        self.upsampler = Upsampler(channels, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) RGB in [0, 1] -> (1, 3, sH, sW) in [0, 1]."""
        shallow = self.fea_conv(x.repeat(1, 4, 1, 1))
        outs, feat = [], shallow
        for name in self.block_names:
            feat = getattr(self, name)(feat)
            outs.append(feat)
        feat = self.c2(F.gelu(self.c1(torch.cat(outs, dim=1)))) + shallow
        return self.upsampler(feat)
