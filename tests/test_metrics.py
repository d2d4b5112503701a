"""PSNR / SSIM against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from esr_cli.metrics import gaussian_window, psnr, rgb_to_y, ssim

RNG = np.random.default_rng(0)


def test_rgb_to_y_is_bt601():
    assert rgb_to_y(np.array([0.0, 0.0, 0.0])) == pytest.approx(16)
    assert rgb_to_y(np.array([1.0, 1.0, 1.0])) == pytest.approx(235)
    assert rgb_to_y(np.array([1.0, 0.0, 0.0])) == pytest.approx(16 + 65.481)
    t = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    assert rgb_to_y(t).shape == (1, 1, 1) and rgb_to_y(t).item() == pytest.approx(16 + 128.553)


def test_psnr_of_a_known_mse():
    hr = RNG.integers(10, 240, size=(20, 24, 3)).astype(np.uint8)
    sr = hr + np.uint8(5)  # every RGB value off by 5
    assert psnr(sr, hr, border=0, y=False) == pytest.approx(20 * math.log10(255 / 5))
    # Y moves by 5 * (65.481 + 128.553 + 24.966) / 255 = 5 * 219 / 255
    assert psnr(sr, hr, border=2) == pytest.approx(20 * math.log10(255 / (5 * 219 / 255)))
    assert psnr(hr, hr, border=4) == math.inf


def test_border_is_shaved():
    hr = np.full((16, 16, 3), 100, np.uint8)
    sr = hr.copy()
    sr[:3] = 0  # only the shaved rows differ
    assert psnr(sr, hr, border=3) == math.inf
    assert psnr(sr, hr, border=2) < 40


def test_ssim_of_identical_and_constant_images():
    x = RNG.integers(0, 256, size=(32, 30, 3)).astype(np.uint8)
    assert ssim(x, x, border=2) == pytest.approx(1.0)
    assert ssim(x, x, border=0, y=False) == pytest.approx(1.0)
    a, b = np.full((20, 20), 100, np.uint8), np.full((20, 20), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    ya, yb = 16 + 219 * 100 / 255, 16 + 219 * 120 / 255  # gray images become three equal channels
    assert ssim(a, b, border=0) == pytest.approx((2 * ya * yb + c1) / (ya**2 + yb**2 + c1))
    assert ssim(a, b, border=0, y=False) == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1))


def test_ssim_falls_with_noise():
    x = RNG.integers(0, 256, size=(40, 40, 3)).astype(np.int32)
    noisy = np.clip(x + RNG.normal(0, 20, x.shape), 0, 255).round()
    assert 0 < ssim(noisy, x, border=0) < 0.99


def test_gaussian_window():
    w = gaussian_window()
    assert w.shape == (11, 11) and w.sum().item() == pytest.approx(1.0)
    assert w[5, 5] == w.max() and w[0, 5] / w[5, 5] == pytest.approx(math.exp(-25 / 4.5))


def test_tensor_and_array_layouts_agree():
    hr = RNG.integers(0, 256, size=(18, 22, 3)).astype(np.uint8)
    sr = np.clip(hr.astype(int) + RNG.integers(-3, 4, hr.shape), 0, 255).astype(np.uint8)
    as_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None]  # noqa: E731
    assert psnr(as_tensor(sr), as_tensor(hr), 2) == pytest.approx(psnr(sr, hr, 2))
    assert ssim(as_tensor(sr), hr, 2) == pytest.approx(ssim(sr, hr, 2))


def test_gray_hr_against_rgb_output():
    gray = RNG.integers(0, 256, size=(16, 16)).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    assert psnr(rgb, gray, border=1) == math.inf


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="modcrop"):
        psnr(np.zeros((8, 8, 3)), np.zeros((9, 8, 3)), border=0)
