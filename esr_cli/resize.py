"""MATLAB-compatible bicubic `imresize` in torch: the resize that makes the benchmarks' LR images."""

from __future__ import annotations

import math

import torch
from torch import Tensor

KERNEL_WIDTH = 4.0
"""Support of the bicubic kernel (in input pixels, before antialiasing widens it)."""


def cubic(x: Tensor) -> Tensor:
    """Keys' cubic convolution kernel with a = -0.5, as MATLAB's `imresize` uses."""
    ax = x.abs()
    ax2, ax3 = ax**2, ax**3
    near = 1.5 * ax3 - 2.5 * ax2 + 1
    far = -0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2
    return near * (ax <= 1) + far * ((ax > 1) & (ax <= 2))


def contributions(in_length: int, out_length: int, scale: float) -> tuple[Tensor, Tensor]:
    """Input indices and float64 weights, each (out_length, taps), of MATLAB `imresize` along one axis.

    Downscaling widens the kernel by 1/scale (antialiasing); indices outside the image are mirrored
    (MATLAB's symmetric padding, the edge pixel repeated)."""
    widen = min(scale, 1.0)
    width = KERNEL_WIDTH / widen
    x = torch.arange(1, out_length + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centres in 1-based input coordinates
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)  # (out, taps), 1-based
    weights = widen * cubic(widen * (u[:, None] - indices))
    weights = weights / weights.sum(dim=1, keepdim=True)
    mirror = torch.cat([torch.arange(in_length), torch.arange(in_length - 1, -1, -1)])
    return mirror[(indices.long() - 1) % (2 * in_length)], weights


def resize_axis(x: Tensor, dim: int, out_length: int, scale: float) -> Tensor:
    """Resize `x` along `dim` to `out_length` samples (a gather and a weighted sum over the taps).

    A uint8 `x` is computed in float64 and rounded back to uint8, as MATLAB does for each pass."""
    indices, weights = contributions(x.shape[dim], out_length, scale)
    dtype = x.dtype
    x = x.movedim(dim, -1)
    if not x.is_floating_point():
        x = x.double()
    taps = x[..., indices.to(x.device)]  # (..., out, taps)
    out = (taps * weights.to(x.device, x.dtype)).sum(dim=-1).movedim(-1, dim)
    return out if dtype.is_floating_point else to_uint8(out / 255)


def imresize(x: Tensor, scale: float | None = None, size: tuple[int, int] | None = None) -> Tensor:
    """MATLAB `imresize(x, scale)` or `imresize(x, [h, w])`, bicubic with antialiasing.

    `x` is (N, C, H, W) or (C, H, W), float or uint8, and the result has x's dtype (pass float64 for
    MATLAB's accuracy). Like MATLAB, a uint8 image is rounded to uint8 after each axis, which clips the
    overshoot of the first pass. Given `scale`, the output size is ceil(scale * input size); given
    `size`, each axis has its own scale."""
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if not (x.is_floating_point() or x.dtype == torch.uint8):
        raise TypeError(f"imresize needs a float or uint8 tensor, got {x.dtype}")
    h, w = x.shape[-2:]
    if size is None:
        size = (_scaled_length(h, scale), _scaled_length(w, scale))
        scales = (scale, scale)
    else:
        scales = (size[0] / h, size[1] / w)
    # MATLAB resizes the axis with the smaller scale first (height first on a tie)
    order = sorted((0, 1), key=lambda axis: scales[axis])
    for axis in order:
        x = resize_axis(x, x.dim() - 2 + axis, size[axis], scales[axis])
    return x


def _scaled_length(length: int, scale: float) -> int:
    # ceil(length * scale), robust to 1/3 not being exact in binary (3k * (1/3) may be k + 1 ulp)
    return max(1, math.ceil(length * scale - 1e-9))


def modcrop(x: Tensor, s: int) -> Tensor:
    """Crop the bottom and right edges of (..., H, W) so that H and W are multiples of `s`."""
    h, w = x.shape[-2:]
    return x[..., : h - h % s, : w - w % s]


def to_uint8(x: Tensor) -> Tensor:
    """MATLAB `im2uint8` of a [0, 1] float image: x * 255 rounded half away from zero, saturated."""
    return torch.floor(x.double() * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def bicubic_downscale(hr: Tensor, s: int) -> Tensor:
    """The benchmarks' LR image: MATLAB `imresize(modcrop(HR, s), 1/s, 'bicubic')` on the uint8 image.

    This reproduces the EDSR benchmark LR (Set5, Set14 X2-X4) bit for bit; resizing `im2double(HR)`
    instead differs from them by up to 12 grey levels at sharp edges (the clipped first pass).
    `hr` is (N, C, H, W) or (C, H, W) with values in 0..255 (uint8 or float); returns uint8 of the same layout."""
    if hr.is_floating_point():
        hr = hr.round().clamp(0, 255).to(torch.uint8)
    return imresize(modcrop(hr, s), 1 / s)
