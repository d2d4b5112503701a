"""The blocks SPAN, SPAN-F and ESPAN share: the deployed Conv3XC and the swift parameter-free attention block (SPAB)
of Wan et al., "Swift Parameter-free Attention Network for Efficient Super-Resolution" (CVPRW 2024)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Conv3XC(nn.Module):
    """SPAN's re-parameterisable conv as deployed: one k x k conv, `eval_conv`.

    In training it is 1x1 -> 3x3 -> 1x1 plus a 1x1 skip, which fuse into `eval_conv`; the published checkpoints hold
    only the fused conv. ESPAN's stem is the 9x9 one (Conv9XC upstream)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.eval_conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.eval_conv(x)


class SPAB(nn.Module):
    """Swift parameter-free attention block: `convs` Conv3XC (c1_r, c2_r, c3_r; ESPAN's last block has two) with SiLU
    between them. The last conv's output o gates itself: (o + x) * (sigmoid(o) - 0.5). A block that changes the width
    (SPAN-F's first, 3 -> C) returns o, ungated.

    Returns the block's output and c1_r's after its SiLU, which SPAN's tail reads from its last block (upstream
    returns c1_r's output, but its in-place SiLU has activated that tensor by then)."""

    def __init__(self, in_channels: int, channels: int, out_channels: int | None = None, convs: int = 3) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        widths = [in_channels] + [channels] * (convs - 1) + [out_channels]
        self.names = [f"c{i}_r" for i in range(1, convs + 1)]
        for name, c_in, c_out in zip(self.names, widths, widths[1:]):
            self.add_module(name, Conv3XC(c_in, c_out))
        self.gated = in_channels == out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = F.silu(self.c1_r(x))
        out = self.c2_r(first)
        for name in self.names[2:]:
            out = getattr(self, name)(F.silu(out))
        if self.gated:
            out = (out + x) * (torch.sigmoid(out) - 0.5)
        return out, first


def nearest_shortcut(scale: int) -> nn.Conv2d:
    """SPAN-F and SPANV2's `conv_near`: a per-colour 3x3 conv to 3 * scale**2 maps, bias-free, initialised to copy
    the centre pixel, so that its pixel shuffle is the nearest-neighbour upscaled input (SPANV2 trained it further)."""
    conv = nn.Conv2d(3, 3 * scale**2, 3, padding=1, groups=3, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, 1, 1] = 1.0
    return conv


def add_blocks(module: nn.Module, blocks: list[nn.Module]) -> list[str]:
    """Registers the blocks as `block_1` .. `block_n` (the checkpoints' names); returns the names."""
    names = [f"block_{i}" for i in range(1, len(blocks) + 1)]
    for name, block in zip(names, blocks):
        module.add_module(name, block)
    return names
