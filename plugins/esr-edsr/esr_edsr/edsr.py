"""EDSR, Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution" (CVPRW 2017); keys match sanghyun-son/EDSR-PyTorch."""

from __future__ import annotations

import math

import torch
from torch import nn

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
"""Mean RGB of the DIV2K training images, in [0, 1]."""


def conv(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Conv2d:
    """A 'same' convolution, as every convolution of the paper is."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


class MeanShift(nn.Conv2d):
    """Subtracts (sign -1) or adds back (sign +1) the DIV2K mean, as a frozen 1x1 conv stored in the checkpoint."""

    def __init__(self, rgb_range: float = 255.0, sign: int = -1):
        super().__init__(3, 3, kernel_size=1)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.bias.data = sign * rgb_range * torch.tensor(DIV2K_MEAN)
        self.requires_grad_(False)


class ResBlock(nn.Module):
    """Conv-ReLU-Conv with no batch norm, its output scaled by `res_scale` before the skip (paper Fig. 2c)."""

    def __init__(self, n_feats: int, kernel_size: int = 3, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(
            conv(n_feats, n_feats, kernel_size), nn.ReLU(inplace=True), conv(n_feats, n_feats, kernel_size)
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class Upsampler(nn.Sequential):
    """Sub-pixel upsampling: one conv + pixel shuffle by 3, or log2(scale) of them by 2."""

    def __init__(self, scale: int, n_feats: int):
        factor, steps = (3, 1) if scale == 3 else (2, int(math.log2(scale)))
        if factor**steps != scale:
            raise ValueError(f"scale {scale} is neither 3 nor a power of 2")
        layers = []
        for _ in range(steps):
            layers += [conv(n_feats, factor**2 * n_feats), nn.PixelShuffle(factor)]
        super().__init__(*layers)


class EDSR(nn.Module):
    """Mean shift, head conv, residual body with a long skip, upsampling tail; fed RGB in [0, 255]."""

    def __init__(self, scale: int = 4, n_resblocks: int = 32, n_feats: int = 256, res_scale: float = 0.1):
        super().__init__()
        self.sub_mean = MeanShift(sign=-1)
        self.add_mean = MeanShift(sign=1)
        self.head = nn.Sequential(conv(3, n_feats))
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale=res_scale) for _ in range(n_resblocks)],
                                  conv(n_feats, n_feats))
        self.tail = nn.Sequential(Upsampler(scale, n_feats), conv(n_feats, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 255] -> (B, 3, H*scale, W*scale) in [0, 255]."""
        x = self.head(self.sub_mean(x))
        x = x + self.body(x)
        return self.add_mean(self.tail(x))
