"""MobileSR (NJUST_ESR, NTIRE 2022 ESR challenge, team20): five stages of an 8x8 window-attention Transformer and an
inverted-residual block. Reference: ofsoundof/NTIRE2022_ESR models/team20_mobilesr.py."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

WINDOW = 8


@dataclass(frozen=True)
class MobileSRConfig:
    """Defaults: the challenge entry."""

    channels: int = 40
    ratios: tuple[int, ...] = field(default=(4, 2, 2, 2, 4))
    """Expansion of each stage's MLP and inverted-residual block; one stage per ratio."""
    heads: int = 8
    """Attention heads. Not in the tensor shapes: every published file uses 8."""
    scale: int = 4


class WindowAttention(nn.Module):
    """Multi-head self-attention among the tokens of each window, (windows, tokens, C)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head dim)) v
        return self.proj_out(x.transpose(1, 2).reshape(b, n, c))


def windows(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C), H and W multiples of WINDOW -> (B * windows, WINDOW**2, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // WINDOW, WINDOW, w // WINDOW, WINDOW, c).transpose(2, 3)
    return x.reshape(-1, WINDOW * WINDOW, c)


def unwindow(x: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """The inverse of `windows`."""
    x = x.view(b, h // WINDOW, w // WINDOW, WINDOW, WINDOW, -1).transpose(2, 3)
    return x.reshape(b, h, w, -1)


class MLP(nn.Module):
    """Linear expansion by `ratio`, GELU, linear projection, on (..., C) tokens."""

    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels * ratio), nn.GELU(), nn.Linear(channels * ratio, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class Transformer(nn.Module):
    """Depth-wise conv position embedding, then pre-norm window attention and MLP, each with a residual.

    As in the authors' code the normalised map is zero-padded at the bottom and right to whole windows and attended
    without a mask: the padded zeros take part in the softmax of the last row and column of windows."""

    def __init__(self, channels: int, heads: int, ratio: int) -> None:
        super().__init__()
        self.pos_embed = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = WindowAttention(channels, heads)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = MLP(channels, ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x + self.pos_embed(x)).permute(0, 2, 3, 1)  # (B, H, W, C)
        b, h, w, _ = x.shape
        padded = F.pad(self.norm1(x), (0, 0, 0, -w % WINDOW, 0, -h % WINDOW))
        hp, wp = padded.shape[1:3]
        x = x + unwindow(self.attn(windows(padded)), b, hp, wp)[:, :h, :w]
        x = x + self.mlp(self.norm2(x))
        return x.permute(0, 3, 1, 2)


class InvertedResidual(nn.Module):
    """1x1 expansion, depth-wise 3x3, 1x1 projection (LeakyReLU 0.2 between them), plus the input."""

    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        hidden = channels * ratio
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.LeakyReLU(0.2),
                                 nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class Body(nn.Module):
    """The stages: (Transformer, InvertedResidual) pairs."""

    def __init__(self, channels: int, heads: int, ratios: tuple[int, ...]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleList([Transformer(channels, heads, r), InvertedResidual(channels, r)])
                                    for r in ratios)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for transformer, residual in self.layers:
            x = residual(transformer(x))
        return x


def upsampler(channels: int, scale: int) -> nn.Sequential:
    """1x1 conv + pixel shuffle: twice by 2 for x4, once by `scale` otherwise."""
    steps = (2, 2) if scale == 4 else (scale,)
    layers = []
    for r in steps:
        layers += [nn.Conv2d(channels, channels * r * r, 1), nn.PixelShuffle(r)]
    return nn.Sequential(*layers)


class MobileSR(nn.Module):
    """3x3 head, the stages, a 3x3 fusion of head and body features, upsampler, LeakyReLU + 3x3 tail, plus the
    bilinearly upscaled input."""

    def __init__(self, *, channels: int, ratios: tuple[int, ...], heads: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = Body(channels, heads, tuple(ratios))
        self.fuse = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.upsapling = upsampler(channels, scale)  # sic: the checkpoints' spelling
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, 3, sH, sW)."""
        feat = self.head(x)
        feat = self.fuse(torch.cat([feat, self.body(feat)], dim=1))
        out = self.tail(F.leaky_relu(self.upsapling(feat), 0.2))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
