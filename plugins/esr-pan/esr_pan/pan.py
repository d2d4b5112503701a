"""PAN: Zhao et al., "Efficient Image Super-Resolution Using Pixel Attention" (ECCVW 2020), matching zhaohengyuan1/PAN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PA(nn.Module):
    """Pixel attention: x * sigmoid(1x1 conv(x)), one weight per pixel and channel."""

    def __init__(self, nf: int):
        super().__init__()
        self.conv = nn.Conv2d(nf, nf, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class PAConv(nn.Module):
    """Pixel-attention convolution: 3x3 conv gated by sigmoid(1x1 conv), then a 3x3 conv."""

    def __init__(self, nf: int):
        super().__init__()
        self.k2 = nn.Conv2d(nf, nf, 1)
        self.k3 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)
        self.k4 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k4(self.k3(x) * torch.sigmoid(self.k2(x)))


class SCPA(nn.Module):
    """Self-calibrated convolution with pixel attention: a plain 3x3 branch and a PAConv branch on half
    the channels each, concatenated, fused by a 1x1 conv, plus the input."""

    def __init__(self, nf: int):
        super().__init__()
        half = nf // 2
        self.conv1_a = nn.Conv2d(nf, half, 1, bias=False)
        self.conv1_b = nn.Conv2d(nf, half, 1, bias=False)
        self.k1 = nn.Sequential(nn.Conv2d(half, half, 3, padding=1, bias=False))
        self.PAConv = PAConv(half)
        self.conv3 = nn.Conv2d(2 * half, nf, 1, bias=False)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.lrelu(self.k1(self.lrelu(self.conv1_a(x))))
        b = self.lrelu(self.PAConv(self.lrelu(self.conv1_b(x))))
        return self.conv3(torch.cat([a, b], dim=1)) + x


class PAN(nn.Module):
    """3x3 conv, `nb` SCPA blocks + 3x3 conv with a long skip, U-PA upsampling (nearest, conv, PA, conv;
    one stage for x2/x3, two x2 stages for x4), 3x3 conv, plus a bilinear image skip."""

    def __init__(self, nf: int = 40, unf: int = 24, nb: int = 16, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.conv_first = nn.Conv2d(3, nf, 3, padding=1)
        self.SCPA_trunk = nn.Sequential(*(SCPA(nf) for _ in range(nb)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        # U-PA stages are flat attributes (upconv1, att1, HRconv1, ...) to keep the checkpoint's keys
        self.upconv1 = nn.Conv2d(nf, unf, 3, padding=1)
        self.att1 = PA(unf)
        self.HRconv1 = nn.Conv2d(unf, unf, 3, padding=1)
        if scale == 4:
            self.upconv2 = nn.Conv2d(unf, unf, 3, padding=1)
            self.att2 = PA(unf)
            self.HRconv2 = nn.Conv2d(unf, unf, 3, padding=1)
        self.conv_last = nn.Conv2d(unf, 3, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2)

    def upa(self, x: torch.Tensor, factor: int, upconv: nn.Conv2d, att: PA, hrconv: nn.Conv2d) -> torch.Tensor:
        """One U-PA stage: nearest upsampling, conv, pixel attention, conv."""
        x = att(upconv(F.interpolate(x, scale_factor=factor, mode="nearest")))
        return self.lrelu(hrconv(self.lrelu(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, sH, sW)."""
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.SCPA_trunk(fea))
        if self.scale == 4:
            fea = self.upa(fea, 2, self.upconv1, self.att1, self.HRconv1)
            fea = self.upa(fea, 2, self.upconv2, self.att2, self.HRconv2)
        else:
            fea = self.upa(fea, self.scale, self.upconv1, self.att1, self.HRconv1)
        out = self.conv_last(fea)
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
