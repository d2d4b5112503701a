"""Training-time re-parameterisable blocks: rich branches while training, one plain conv when deployed.

Each block's `fuse()` returns the one `nn.Conv2d` computing the same map (equal up to rounding). A deploy network is
expanded for training by `expand` (its chosen plain convs become blocks) and fused back by `fuse_modules`, which
puts each block's conv where the plain conv was: the state dict is the deploy network's, key for key.

- `Conv3XC` (SPAN, Wan et al. CVPRW 2024): 1x1 -> 3x3 -> 1x1 at `gain` times the width, plus a 1x1 skip.
- `ECB`, the edge-oriented block (ECBSR, Zhang et al. ACM MM 2021; NTIRE 2022 NEESR's PlainRFDN): 3x3, 1x1 -> 3x3,
  1x1 -> scaled Sobel-x, 1x1 -> scaled Sobel-y and 1x1 -> scaled Laplacian, summed.

A 1x1 conv followed by a 3x3 fuses exactly only if the 1x1 sees the zero padding (its bias then reaches the border
as the fused conv's bias does): the blocks pad their input first and run the 3x3 convs unpadded, as the authors do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))

Kernel = tuple[torch.Tensor, torch.Tensor]
"""A 3x3 conv as (weight (out, in, 3, 3), bias (out,))."""


def pointwise_then(first: nn.Conv2d, w2: torch.Tensor, b2: torch.Tensor) -> Kernel:
    """1x1 conv `first` (on the zero-padded input), then a 3x3 conv (w2, b2) without padding, as one 3x3 conv."""
    w1 = first.weight[:, :, 0, 0]
    return torch.einsum("omhw,mi->oihw", w2, w1), b2 + torch.einsum("omhw,m->o", w2, first.bias)


def then_pointwise(kernel: Kernel, last: nn.Conv2d) -> Kernel:
    """A 3x3 conv (w, b), then the 1x1 conv `last`, as one 3x3 conv."""
    w3 = last.weight[:, :, 0, 0]
    return torch.einsum("po,oihw->pihw", w3, kernel[0]), last.bias + w3 @ kernel[1]


def centred(conv: nn.Conv2d) -> Kernel:
    """A 1x1 conv as a 3x3 one (the weight in the centre)."""
    return F.pad(conv.weight, (1, 1, 1, 1)), conv.bias


class Reparam(nn.Module):
    """A block equal to one 3x3 conv (stride 1, padding 1) of `in_channels` -> `out_channels`."""

    def kernel(self) -> Kernel:
        raise NotImplementedError

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        weight, bias = self.kernel()
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1).to(weight)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        return conv


class Conv3XC(Reparam):
    """SPAN's Conv3XC as trained: `conv` = 1x1 (in -> gain*in), 3x3 (-> gain*out), 1x1 (-> out) on the zero-padded
    input, plus `sk`, a 1x1 skip (in -> out). The authors' names (hongyuanyu/SPAN, gain1=2 in SPAN)."""

    def __init__(self, in_channels: int, out_channels: int, gain: int = 2) -> None:
        super().__init__()
        self.sk = nn.Conv2d(in_channels, out_channels, 1)
        self.conv = nn.Sequential(nn.Conv2d(in_channels, in_channels * gain, 1),
                                  nn.Conv2d(in_channels * gain, out_channels * gain, 3),
                                  nn.Conv2d(out_channels * gain, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)

    def kernel(self) -> Kernel:
        expand, conv, reduce = self.conv
        w, b = then_pointwise(pointwise_then(expand, conv.weight, conv.bias), reduce)
        skip_w, skip_b = centred(self.sk)
        return w + skip_w, b + skip_b


class EdgeBranch(nn.Module):
    """1x1 conv, then a fixed 3x3 edge filter per channel, scaled and shifted per channel (learnt)."""

    def __init__(self, in_channels: int, out_channels: int, mask: tuple) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.scale = nn.Parameter(torch.randn(out_channels, 1, 1, 1) * 1e-3)
        self.bias = nn.Parameter(torch.randn(out_channels) * 1e-3)
        self.register_buffer("mask", torch.tensor(mask).expand(out_channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x_padded: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.conv(x_padded), self.scale * self.mask, self.bias, groups=self.mask.shape[0])

    def kernel(self) -> Kernel:
        depthwise = (self.scale * self.mask)[:, 0]  # (out, 3, 3)
        dense = torch.diag_embed(depthwise.permute(1, 2, 0)).permute(2, 3, 0, 1)  # (out, out, 3, 3), diagonal
        return pointwise_then(self.conv, dense, self.bias)


class ECB(Reparam):
    """Edge-oriented convolution block: conv3x3 + (1x1 -> 3x3 at `depth_multiplier` x out) + Sobel-x + Sobel-y +
    Laplacian edge branches, summed (no activation: the network's own follows)."""

    def __init__(self, in_channels: int, out_channels: int, depth_multiplier: int = 2) -> None:
        super().__init__()
        mid = out_channels * depth_multiplier
        self.conv3x3 = nn.Conv2d(in_channels, out_channels, 3)
        self.expand = nn.Conv2d(in_channels, mid, 1)
        self.conv1x1_3x3 = nn.Conv2d(mid, out_channels, 3)
        self.sobel_x = EdgeBranch(in_channels, out_channels, SOBEL_X)
        self.sobel_y = EdgeBranch(in_channels, out_channels, SOBEL_Y)
        self.laplacian = EdgeBranch(in_channels, out_channels, LAPLACIAN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1))
        return (self.conv3x3(x) + self.conv1x1_3x3(self.expand(x))
                + self.sobel_x(x) + self.sobel_y(x) + self.laplacian(x))

    def kernel(self) -> Kernel:
        kernels = [(self.conv3x3.weight, self.conv3x3.bias),
                   pointwise_then(self.expand, self.conv1x1_3x3.weight, self.conv1x1_3x3.bias),
                   self.sobel_x.kernel(), self.sobel_y.kernel(), self.laplacian.kernel()]
        return sum(w for w, _ in kernels), sum(b for _, b in kernels)


def expand(net: nn.Module, block: Callable[[int, int], Reparam], where: Callable[[str, nn.Conv2d], bool]) -> nn.Module:
    """`net` with every 3x3 stride-1 conv for which `where(qualified_name, conv)` holds replaced by
    `block(in_channels, out_channels)` (in place; returns `net`)."""
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            qualified = f"{name}.{child_name}".lstrip(".")
            if (isinstance(child, nn.Conv2d) and child.kernel_size == (3, 3) and child.stride == (1, 1)
                    and child.padding == (1, 1) and child.groups == 1 and child.bias is not None
                    and where(qualified, child)):
                setattr(module, child_name, block(child.in_channels, child.out_channels))
    return net


@torch.no_grad()
def fuse_modules(net: nn.Module) -> nn.Module:
    """`net` with every re-parameterisable block replaced by its fused conv (in place; returns `net`)."""
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, Reparam):
                setattr(module, child_name, child.fuse().train(child.training))
    return net


def fused(net: nn.Module) -> nn.Module:
    """A fused copy of `net`; `net` itself is left as it is (e.g. to go on training)."""
    return fuse_modules(copy.deepcopy(net)) if any(isinstance(m, Reparam) for m in net.modules()) else net


# ---- a state dict saved with its blocks unfused ----------------------------------------------------

def _conv3xc(tensors: Mapping[str, torch.Tensor]) -> nn.Module:
    skip = tensors["sk.weight"]
    return Conv3XC(skip.shape[1], skip.shape[0], gain=tensors["conv.0.weight"].shape[0] // skip.shape[1])


def _ecb(tensors: Mapping[str, torch.Tensor]) -> nn.Module:
    plain = tensors["conv3x3.weight"]
    return ECB(plain.shape[1], plain.shape[0], depth_multiplier=tensors["expand.weight"].shape[0] // plain.shape[0])


BLOCKS: tuple[tuple[str, Callable[[Mapping[str, torch.Tensor]], nn.Module]], ...] = (
    ("sk.weight", _conv3xc), ("conv3x3.weight", _ecb))
"""Each `esr_cli.reparam` block as it appears in a state dict: a key it always has, and how to build it from its
tensors' shapes."""


@torch.no_grad()
def fuse_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """`state` with the tensors of every re-parameterisable block (`prefix.sk.weight`, `prefix.conv.0.weight`, ...
    for a Conv3XC) replaced by its fused conv's `prefix.weight` and `prefix.bias` (fused in float64), and how many
    blocks there were. The block's own `fuse()` does the arithmetic; a prefix holding only some of a block's
    tensors is left alone."""
    out, fused = dict(state), 0
    for anchor, build in BLOCKS:
        for key in [k for k in out if k == anchor or k.endswith("." + anchor)]:
            prefix = key[: len(key) - len(anchor)]
            tensors = {k[len(prefix):]: v for k, v in out.items() if k.startswith(prefix)}
            try:
                block = build(tensors).double()
                names = set(block.state_dict())
                block.load_state_dict({k: tensors[k].double() for k in names}, strict=True)
            except (KeyError, RuntimeError, ZeroDivisionError):
                continue  # not this block (a plain conv that happens to be named like one of its parts)
            conv = block.fuse()
            dtype = tensors[anchor].dtype
            for name in names:
                del out[prefix + name]
            out[prefix + "weight"], out[prefix + "bias"] = conv.weight.to(dtype), conv.bias.to(dtype)
            fused += 1
    return out, fused
