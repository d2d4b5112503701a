"""Training losses of the seeds' recipes, and their weighted sum.

Every loss takes (sr, hr, lr): (N, 3, H, W) network output and target in [0, 1], and the network's
(N, 3, H/s, W/s) input, which only the contrastive loss uses (its negative is the bicubic-upsampled LR).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import EsrError
from .resize import imresize


class L1(nn.Module):
    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        return F.l1_loss(sr, hr)


class MSE(nn.Module):
    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        return F.mse_loss(sr, hr)


class Charbonnier(nn.Module):
    """mean(sqrt((sr - hr)^2 + eps^2)): a differentiable L1 (MDRN stage 2)."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        return torch.sqrt((sr - hr) ** 2 + self.eps**2).mean()


class FFT(nn.Module):
    """L1 between the 2-D FFTs (real and imaginary parts) of SR and HR: the frequency loss of GFMN / LGVAN."""

    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        a = torch.view_as_real(torch.fft.fft2(sr.float()))
        b = torch.view_as_real(torch.fft.fft2(hr.float()))
        return F.l1_loss(a, b)


def sobel(x: Tensor) -> Tensor:
    """Horizontal and vertical Sobel responses of each channel: (N, C, H, W) -> (N, 2C, H, W), replicate padding."""
    gx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=x.dtype, device=x.device)
    kernel = torch.stack([gx, gx.t()])[:, None].repeat(x.shape[1], 1, 1, 1)  # (2C, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=x.shape[1])


class Edge(nn.Module):
    """Edge-aware loss: L1 between the Sobel maps of SR and HR."""

    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        return F.l1_loss(sobel(sr), sobel(hr))


class Contrastive(nn.Module):
    """RLFN's contrastive loss: d(phi(SR), phi(HR)) / d(phi(SR), phi(bicubic LR)), d = L1, phi a frozen,
    randomly initialised Conv3x3-Tanh-Conv3x3 (the first two layers of VGG-19 with Tanh for ReLU)."""

    def __init__(self, channels: int = 64, seed: int = 0, eps: float = 1e-8) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.Tanh(),
                                      nn.Conv2d(channels, channels, 3, padding=1))
        for conv in (self.features[0], self.features[2]):
            bound = (6 / (conv.in_channels * 9 + conv.out_channels * 9)) ** 0.5  # Xavier-uniform
            conv.weight.data = torch.empty_like(conv.weight).uniform_(-bound, bound, generator=generator)
            conv.bias.data.zero_()
        self.requires_grad_(False)
        self.eps = eps

    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        if lr is None:
            raise ValueError("the contrastive loss needs the LR input (its negative)")
        negative = imresize(lr.float(), size=tuple(hr.shape[-2:]))
        anchor = self.features(sr)
        positive, negative = self.features(hr), self.features(negative)
        return F.l1_loss(anchor, positive) / (F.l1_loss(anchor, negative) + self.eps)


LOSSES = {cls.__name__: cls for cls in (L1, MSE, Charbonnier, FFT, Edge, Contrastive)}


class WeightedSum(nn.Module):
    """sum_i weight_i * loss_i(sr, hr, lr); `terms(...)` gives each term's value for the logs."""

    def __init__(self, losses: Mapping[str, nn.Module], weights: Mapping[str, float]) -> None:
        super().__init__()
        self.losses = nn.ModuleDict(losses)
        self.weights = dict(weights)

    def terms(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> dict[str, Tensor]:
        return {name: self.weights[name] * loss(sr, hr, lr) for name, loss in self.losses.items()}

    def forward(self, sr: Tensor, hr: Tensor, lr: Tensor | None = None) -> Tensor:
        return sum(self.terms(sr, hr, lr).values())


def build_loss(spec: Mapping[str, float | Mapping]) -> WeightedSum:
    """From a recipe's [loss] table: `{L1 = 1.0, FFT = 0.5}` or `{Charbonnier = {weight = 1, eps = 1e-3}}`."""
    if not spec:
        raise EsrError("the recipe has no [loss] terms")
    losses, weights = {}, {}
    for name, value in spec.items():
        if name not in LOSSES:
            raise EsrError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
        options = dict(value) if isinstance(value, Mapping) else {"weight": value}
        weights[name] = float(options.pop("weight", 1.0))
        try:
            losses[name] = LOSSES[name](**options)
        except TypeError as e:
            raise EsrError(f"loss {name}: {e}") from None
    return WeightedSum(losses, weights)
