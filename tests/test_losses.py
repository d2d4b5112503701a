"""Each training loss against a value computed by hand, and the weighted sum."""

from __future__ import annotations

import math

import pytest
import torch

from esr_cli.errors import EsrError
from esr_cli.losses import FFT, L1, MSE, Charbonnier, Contrastive, Edge, build_loss
from esr_cli.resize import imresize


def row(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def test_l1_mse_charbonnier_by_hand():
    sr, hr = row(0.0, 1.0), row(1.0, 1.0)
    assert L1()(sr, hr).item() == pytest.approx(0.5)  # (1 + 0) / 2
    assert MSE()(row(1.0, 2.0), row(0.0, 0.0)).item() == pytest.approx(2.5)  # (1 + 4) / 2
    # eps = 1: (sqrt(0 + 1) + sqrt(3 + 1)) / 2 = 1.5
    assert Charbonnier(eps=1.0)(row(0.0, math.sqrt(3)), row(0.0, 0.0)).item() == pytest.approx(1.5)


def test_fft_loss_by_hand():
    # a constant 2 on 2x2: the DFT is 8 at DC, 0 elsewhere; 4 complex numbers = 8 reals; mean |diff| = 8 / 8
    assert FFT()(torch.full((1, 1, 2, 2), 2.0), torch.zeros(1, 1, 2, 2)).item() == pytest.approx(1.0)
    # a unit impulse: the DFT is 1 everywhere (real): 4 ones among 8 reals
    impulse = torch.zeros(1, 1, 2, 2)
    impulse[..., 0, 0] = 1
    assert FFT()(impulse, torch.zeros(1, 1, 2, 2)).item() == pytest.approx(0.5)


def test_edge_loss_by_hand():
    # x[i, j] = j on 3x3: Sobel-x (replicate padding) is 4, 8, 4 on every row, Sobel-y is 0;
    # against zeros: (3 * (4 + 8 + 4) + 0) / 18 values
    ramp = torch.arange(3.0).repeat(3, 1).view(1, 1, 3, 3)
    assert Edge()(ramp, torch.zeros_like(ramp)).item() == pytest.approx(48 / 18)


def test_contrastive_by_hand():
    loss = Contrastive(channels=1)
    first, second = loss.features[0], loss.features[2]
    first.weight.data.zero_()
    first.weight.data[0, 0, 1, 1] = 1  # phi(x) = tanh(R)
    second.weight.data.zero_()
    second.weight.data[0, 0, 1, 1] = 1
    sr, hr = torch.full((1, 3, 4, 4), 0.5), torch.zeros(1, 3, 4, 4)
    lr = torch.ones(1, 3, 2, 2)  # bicubic up of a constant is that constant
    expected = abs(math.tanh(0.5) - math.tanh(0)) / abs(math.tanh(0.5) - math.tanh(1))
    assert loss(sr, hr, lr).item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_is_lower_for_hr_than_for_bicubic():
    torch.manual_seed(0)
    t = torch.linspace(0, 6.28, 32)
    hr = (0.5 + 0.4 * torch.sin(3 * t)[None, :] * torch.cos(2 * t)[:, None]).expand(1, 3, 32, 32).contiguous()
    lr = imresize(hr, 0.5)
    bicubic = imresize(lr, size=(32, 32))
    loss = Contrastive()
    near_hr = loss(hr + 0.01 * torch.randn_like(hr), hr, lr)
    near_bicubic = loss(bicubic + 0.01 * torch.randn_like(hr), hr, lr)
    assert near_hr < 0.5 < near_bicubic
    assert not any(p.requires_grad for p in loss.parameters())


def test_weighted_sum_and_options():
    loss = build_loss({"L1": 1.0, "MSE": 2.0, "Charbonnier": {"weight": 0.5, "eps": 1.0}})
    sr, hr = row(0.0, math.sqrt(3)), row(0.0, 0.0)
    l1, mse, charb = math.sqrt(3) / 2, 3 / 2, 1.5
    assert loss(sr, hr).item() == pytest.approx(l1 + 2 * mse + 0.5 * charb, rel=1e-6)
    assert set(loss.terms(sr, hr)) == {"L1", "MSE", "Charbonnier"}


def test_unknown_loss_is_a_clear_error():
    with pytest.raises(EsrError, match="unknown loss 'SSIM'"):
        build_loss({"SSIM": 1.0})
    with pytest.raises(EsrError, match="loss L1"):
        build_loss({"L1": {"weight": 1.0, "eps": 2}})
