"""PSNR and SSIM as the super-resolution tables compute them (BT.601 Y, shaved border, 8-bit images)."""

from __future__ import annotations

import math

import numpy as np
import torch

Y_WEIGHTS = (65.481, 128.553, 24.966)
"""MATLAB `rgb2ycbcr` luma row: Y = 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1]."""
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2, PEAK = 11, 1.5, 0.01, 0.03, 255.0


def rgb_to_y(x):
    """BT.601 luma in [16, 235] (float) of RGB in [0, 1]: channel-last numpy (..., 3), or a tensor (..., 3, H, W)."""
    if isinstance(x, torch.Tensor):
        w = torch.tensor(Y_WEIGHTS, dtype=x.dtype, device=x.device).view(3, 1, 1)
        return 16 + (x * w).sum(dim=-3)
    return 16 + np.asarray(x, dtype=np.float64) @ np.array(Y_WEIGHTS)


def as_hwc(image) -> np.ndarray:
    """An 8-bit-valued image as float64 (H, W, 3): numpy (H, W) or (H, W, C), or a tensor (C, H, W) / (1, C, H, W).

    Gray images become three equal channels, as the benchmark loaders do (Set14 `bridge`); alpha is dropped."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = image[0] if image.dim() == 4 else image
        image = image.permute(1, 2, 0).numpy() if image.dim() == 3 else image.numpy()
    x = np.atleast_3d(np.asarray(image, dtype=np.float64))
    if x.shape[2] in (1, 2):
        x = np.repeat(x[..., :1], 3, axis=2)
    return x[..., :3]


def _prepare(sr, hr, border: int, y: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 (H, W, C) in 0..255, Y (C = 1) or RGB, with `border` pixels shaved."""
    sr, hr = as_hwc(sr), as_hwc(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"image sizes differ: {sr.shape[:2]} vs {hr.shape[:2]} (modcrop the HR to the scale)")
    if y:
        sr, hr = rgb_to_y(sr / PEAK)[..., None], rgb_to_y(hr / PEAK)[..., None]
    if border:
        sr, hr = sr[border:-border, border:-border], hr[border:-border, border:-border]
    return sr, hr


def psnr(sr, hr, border: int, y: bool = True) -> float:
    """10 log10(255^2 / MSE) over the Y channel (y=True) or the RGB channels, `border` pixels shaved; inf if equal."""
    sr, hr = _prepare(sr, hr, border, y)
    mse = float(np.mean((sr - hr) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(PEAK**2 / mse)


def ssim(sr, hr, border: int, y: bool = True) -> float:
    """SSIM of Wang et al. (11x11 Gaussian window, sigma 1.5, 'valid' filtering, as MATLAB `ssim_index`),
    on Y or averaged over the RGB channels, `border` pixels shaved."""
    sr, hr = _prepare(sr, hr, border, y)
    return float(ssim_map(_planes(sr), _planes(hr)).mean())


def _planes(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[:, None]  # (C, 1, H, W)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised (size, size) Gaussian of MATLAB `fspecial('gaussian', size, sigma)`, float64."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Local SSIM of two (N, 1, H, W) float64 planes in 0..255, 'valid' part only: (N, 1, H - 10, W - 10)."""
    window = gaussian_window().to(a)[None, None]

    def blur(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, window)

    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
