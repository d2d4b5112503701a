"""RRDBNet, the generator of ESRGAN (Wang et al., ECCVW 2018) as Real-ESRGAN uses it (XPixelGroup/BasicSR,
basicsr/archs/rrdbnet_arch.py): residual-in-residual dense blocks at the input resolution, then two nearest x2
upsamplings each followed by a conv. For x2 and x1 the input is first pixel-unshuffled by 2 or 4, so the same x4
body serves every scale."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

UNSHUFFLE = {4: 1, 2: 2, 1: 4}
"""Pixel-unshuffle factor of the input, by scale."""


@dataclass(frozen=True)
class RRDBNetConfig:
    features: int = 64
    blocks: int = 23
    growth: int = 32
    """Channels each dense layer adds."""
    scale: int = 4


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each reading the block input and every earlier output; the last one's output, x0.2, is the
    residual."""

    def __init__(self, features: int, growth: int):
        super().__init__()
        for i in range(5):
            out = features if i == 4 else growth
            setattr(self, f"conv{i + 1}", nn.Conv2d(features + i * growth, out, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i in range(1, 5):
            feats.append(lrelu(getattr(self, f"conv{i}")(torch.cat(feats, 1))))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks in a chain, x0.2, plus the input."""

    def __init__(self, features: int, growth: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(features, growth)
        self.rdb2 = ResidualDenseBlock(features, growth)
        self.rdb3 = ResidualDenseBlock(features, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """conv_first, `blocks` RRDBs + conv_body (residual), 2 x (nearest x2, conv, LeakyReLU 0.2), conv_hr, conv_last.
    RGB in [0, 1]."""

    def __init__(self, features: int = 64, blocks: int = 23, growth: int = 32, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.unshuffle = UNSHUFFLE[scale]
        self.conv_first = nn.Conv2d(3 * self.unshuffle**2, features, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(features, growth) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_hr = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_last = nn.Conv2d(features, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H*scale, W*scale). For x2/x1 an odd size is reflect-padded at the bottom and
        right to the unshuffle factor and the output cropped, as Real-ESRGAN's `RealESRGANer` does (`mod_pad`)."""
        h, w = x.shape[-2:]
        if self.unshuffle > 1:
            r = self.unshuffle
            x = F.pixel_unshuffle(F.pad(x, (0, -w % r, 0, -h % r), mode="reflect"), r)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(lrelu(self.conv_hr(feat)))[..., : h * self.scale, : w * self.scale]
