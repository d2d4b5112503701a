"""SRVGGNetCompact, the "compact" network of Real-ESRGAN (xinntao/Real-ESRGAN, realesrgan/archs/srvgg_arch.py):
a plain chain of 3x3 convs and activations at the input resolution, one pixel shuffle, and the nearest-upsampled
input added as the base."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("prelu", "relu", "leakyrelu")


@dataclass(frozen=True)
class CompactConfig:
    features: int = 64
    convs: int = 16
    """3x3 convs between the first conv (3 -> features) and the last (features -> 3 * scale^2)."""
    activation: str = "prelu"
    """After every conv but the last: `prelu` (one slope per channel), `relu`, or `leakyrelu` (slope 0.1)."""
    scale: int = 4


def make_activation(kind: str, features: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(features)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leakyrelu":
        return nn.LeakyReLU(0.1, inplace=True)
    raise ValueError(f"activation {kind!r}: choose one of {', '.join(ACTIVATIONS)}")


class Compact(nn.Module):
    """`body`: conv, act, `convs` x (conv, act), conv to 3 * scale^2; pixel shuffle; + nearest upsampling of the input.
    RGB in [0, 1], no normalisation."""

    def __init__(self, features: int = 64, convs: int = 16, activation: str = "prelu", scale: int = 4):
        super().__init__()
        layers = [nn.Conv2d(3, features, 3, 1, 1), make_activation(activation, features)]
        for _ in range(convs):
            layers += [nn.Conv2d(features, features, 3, 1, 1), make_activation(activation, features)]
        layers.append(nn.Conv2d(features, 3 * scale**2, 3, 1, 1))
        self.body = nn.Sequential(*layers)  # keys body.<index>, as the authors' ModuleList
        self.upsample = nn.PixelShuffle(scale)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H*scale, W*scale)."""
        base = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return self.upsample(self.body(x)) + base

