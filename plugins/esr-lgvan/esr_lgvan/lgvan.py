"""LGVAN, the Local-Global Visual Attention Network (NTIRE 2023 ESR team18), matching charonf/LGVAN-NTIRE2023-ESR."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esr_cli.layers import LayerNorm2d


def depthwise(dim: int, kernel: tuple[int, int], padding: tuple[int, int], dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(dim, dim, kernel, padding=padding, dilation=dilation, groups=dim)


class LGCA(nn.Module):
    """Local-Global Convolutional Attention: F * Conv_p(sum_i Branch_i(Conv_p(F)))."""

    def __init__(self, dim: int):
        super().__init__()
        self.head = nn.Conv2d(dim, dim, 1)
        # branch 0, global: 5x5 depth-wise then 5x5 depth-wise with dilation 3 (receptive field 17)
        self.conv0 = depthwise(dim, (5, 5), (2, 2))
        self.conv_spatial = depthwise(dim, (5, 5), (6, 6), dilation=3)
        # branches 1 and 2, local: paired asymmetric depth-wise convolutions of size 5 and 3. As in the
        # reference, each one pads the axis it does not convolve, so only the pair keeps the size.
        self.conv_v = depthwise(dim, (1, 5), (2, 0))
        self.conv_h = depthwise(dim, (5, 1), (0, 2))
        self.conv_v_2 = depthwise(dim, (1, 3), (1, 0))
        self.conv_h_2 = depthwise(dim, (3, 1), (0, 1))
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        branches = (self.conv_spatial(self.conv0(f)) + self.conv_h(self.conv_v(f))
                    + f + self.conv_h_2(self.conv_v_2(f)))  # branch 3 is the identity
        return x * self.conv1(branches)


class Attention(nn.Module):
    """The attention half of an LGAB: norm, 1x1, GELU, LGCA, 1x1, layer scale, residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.scale = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = LGCA(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.spatial_gating_unit(self.activation(self.proj_1(self.norm(x))))
        return self.proj_2(y) * self.scale + x


class LEFN(nn.Module):
    """Locally Enhanced Feed-forward Network: expand, 3x3 depth-wise with self-residual, GELU, contract."""

    def __init__(self, dim: int, expansion: int = 2):
        super().__init__()
        hidden = expansion * dim
        self.norm = LayerNorm2d(dim)
        self.scale = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.activation = nn.GELU()
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc1(self.norm(x))
        y = self.activation(self.dwconv(y) + y)
        return self.fc2(y) * self.scale + x


class LGAB(nn.Module):
    """Local-Global Attention Block: LGCA attention, then LEFN."""

    def __init__(self, dim: int):
        super().__init__()
        self.atten = Attention(dim)
        self.MLP = LEFN(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.MLP(self.atten(x))


def upsampler(dim: int, scale: int) -> nn.Sequential:
    """1x1 conv + pixel shuffle; x4 is two x2 stages."""
    factors = (2, 2) if scale == 4 else (scale,)
    layers = []
    for r in factors:
        layers += [nn.Conv2d(dim, dim * r * r, 1), nn.PixelShuffle(r)]
    return nn.Sequential(*layers)


class LGVAN(nn.Module):
    """3x3 conv, `num_block` LGABs, grouped 3x3 conv + long skip, pixel-shuffle tail, plus a bilinear image skip."""

    def __init__(self, num_feat: int = 32, num_block: int = 9, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.conv_first = nn.Conv2d(3, num_feat, 3, padding=1)
        self.layers = nn.ModuleList(LGAB(num_feat) for _ in range(num_block))
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, padding=1, groups=2)
        self.upsapling = upsampler(num_feat, scale)  # sic: the checkpoint's key spelling
        self.act = nn.LeakyReLU(0.2)
        self.conv_last = nn.Conv2d(num_feat, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, sH, sW)."""
        shallow = self.conv_first(x)
        deep = shallow
        for layer in self.layers:
            deep = layer(deep)
        feat = self.conv_after_body(deep) + shallow
        out = self.conv_last(self.act(self.upsapling(feat)))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
