"""MDRN (Mao et al., "Multi-level Dispersion Residual Network for Efficient Image SR", CVPRW 2023), matching bbbolt/MDRN."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from esr_cli import tiling

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
STRIDE = 6  # of MDSA's pooled maps: stride-2 conv, then pooling with stride 3
MIN_SIZE = 15  # smaller inputs leave MDSA's stride-2 conv + 3-stride pooling too small to reflect-pad


@dataclass
class MDRNConfig:
    num_feat: int = 56  # MDRN-S (the NTIRE 2023 entry) uses 28
    num_blocks: int = 8  # EADBs, named B1 .. B8 as in the authors' checkpoints
    scale: int = 4


class BSConv(nn.Module):
    """Blueprint separable convolution (BSConv-U): a 1x1 pointwise conv, then a reflect-padded depthwise conv."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.pw = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.dw = nn.Conv2d(out_ch, out_ch, kernel_size, stride, padding, groups=out_ch, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw(self.pw(x))


def local_variance(x: torch.Tensor, size: int = 7, stride: int = 3, padding: int = 1) -> torch.Tensor:
    """Unbiased variance over `size` x `size` windows taken every `stride` pixels (reflect padding)."""
    x = F.pad(x, [padding] * 4, mode="reflect")
    windows = x.unfold(2, size, stride).unfold(3, size, stride)  # (B, C, h, w, size, size)
    return windows.var(dim=(-1, -2), unbiased=True)


class MultiLevelDispersionAttention(nn.Module):
    """The spatial gate of MDSA: three pooled branches (max 3/5/7, the last plus local variance) on a squeezed map."""

    def __init__(self, channels: int):
        super().__init__()
        f = channels // 4
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        for i in range(4):
            self.add_module(f"conv2_{i}", BSConv(f, f, 3, stride=2, padding=1))
        self.maxPooling_0 = nn.MaxPool2d(kernel_size=3, stride=3, padding=1)
        self.maxPooling_1 = nn.MaxPool2d(kernel_size=5, stride=3)
        self.maxPooling_2 = nn.MaxPool2d(kernel_size=7, stride=3, padding=1)
        for i in range(3):
            self.add_module(f"conv_max_{i}", BSConv(f, f))
        for i in range(3):
            self.add_module(f"conv3_{i}", BSConv(f, f))
        self.conv4 = nn.Conv2d(f, channels, 1)

    def branch(self, i: int, pooled: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        conv_max, conv3 = getattr(self, f"conv_max_{i}"), getattr(self, f"conv3_{i}")
        return tiling.upsample(conv3(F.gelu(conv_max(pooled))), size, stride=STRIDE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.conv1(x)  # (B, C/4, H, W)
        pooled = (
            self.maxPooling_0(self.conv2_0(squeezed)),
            self.maxPooling_1(self.conv2_1(squeezed)),
            self.maxPooling_2(self.conv2_2(squeezed)) + local_variance(self.conv2_3(squeezed)),
        )  # each (B, C/4, ~H/6, ~W/6)
        size = (x.shape[2], x.shape[3])
        levels = sum(self.branch(i, p, size) for i, p in enumerate(pooled))
        return x * torch.sigmoid(self.conv4(levels + self.conv_f(squeezed)))


class MDSA(nn.Module):
    """Multi-level dispersion spatial attention, with its residual connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(MultiLevelDispersionAttention(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class ContrastChannelAttention(nn.Module):
    """Contrast-aware channel attention (IMDN's CCA): gate from per-channel std + mean."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = tiling.mean_std(x)  # over the whole image, also when tiled
        return x * self.conv_du(std + mean)


class ECCA(nn.Module):
    """Enhanced contrast-aware channel attention: 1x1 conv, GELU, CCA, depthwise 3x3, plus the input."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 1), nn.GELU(), ContrastChannelAttention(channels, reduction),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class EADB(nn.Module):
    """Enhanced attention distillation block: three BSRBs (GELU(BSConv(x) + x)), each with a 1x1 distillation
    branch, a last BSConv, 1x1 fusion, then MDSA and ECCA, plus the block's input."""

    def __init__(self, channels: int):
        super().__init__()
        distilled = channels // 2
        self.c1_d, self.c1_r = nn.Conv2d(channels, distilled, 1), BSConv(channels, channels)
        self.c2_d, self.c2_r = nn.Conv2d(channels, distilled, 1), BSConv(channels, channels)
        self.c3_d, self.c3_r = nn.Conv2d(channels, distilled, 1), BSConv(channels, channels)
        self.c4 = BSConv(channels, distilled)
        self.c5 = nn.Conv2d(distilled * 4, channels, 1)
        self.esa = MDSA(channels)
        self.cca = ECCA(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, r = [], x
        for distill, refine in ((self.c1_d, self.c1_r), (self.c2_d, self.c2_r), (self.c3_d, self.c3_r)):
            kept.append(F.gelu(distill(r)))
            r = F.gelu(refine(r) + r)  # BSRB
        kept.append(F.gelu(self.c4(r)))
        return self.cca(self.esa(self.c5(torch.cat(kept, dim=1)))) + x


class Upsampler(nn.Module):
    """One 3x3 conv to 3 * scale^2 channels, then pixel shuffle."""

    def __init__(self, num_feat: int, scale: int):
        super().__init__()
        self.upsampleOneStep = nn.Sequential(nn.Conv2d(num_feat, 3 * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampleOneStep(x)


class MDRN(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, 3, H*scale, W*scale); the DIV2K mean is subtracted and added back inside."""

    def __init__(self, num_feat: int = 56, num_blocks: int = 8, scale: int = 4):
        super().__init__()
        self.register_buffer("mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.fea_conv = nn.Conv2d(3, num_feat, 3, padding=1)
        self.blocks = [EADB(num_feat) for _ in range(num_blocks)]
        for i, block in enumerate(self.blocks, start=1):
            self.add_module(f"B{i}", block)
        self.c1 = nn.Conv2d(num_feat * num_blocks, num_feat, 1)
        self.c2 = BSConv(num_feat, num_feat)
        self.upsampler = Upsampler(num_feat, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"MDRN needs inputs of at least {MIN_SIZE}x{MIN_SIZE} pixels, got {tuple(x.shape[-2:])}")
        shallow = self.fea_conv(x - self.mean)
        outputs, h = [], shallow
        for block in self.blocks:
            h = block(h)
            outputs.append(h)
        fused = self.c2(F.gelu(self.c1(torch.cat(outputs, dim=1))))
        return self.upsampler(fused + shallow) + self.mean
