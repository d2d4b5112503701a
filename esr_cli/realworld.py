"""Real-ESRGAN's second-order degradation pipeline: HR patch -> LR, for real-world fine-tuning.

Wang et al., Real-ESRGAN (ICCVW 2021), section 3 and `realesrgan/models/realesrgan_model.py` + `realesrgan_dataset.py`
with the defaults of `options/train_realesrgan_x4plus.yml`: two stages of (blur -> resize -> noise -> JPEG), where
the blur kernel is one of isotropic / anisotropic Gaussian, generalized Gaussian, plateau (or a sinc), the resize goes
up, down or nowhere with area / bilinear / bicubic, the noise is Gaussian or Poisson, in colour or gray; the second
stage ends with the resize to the LR size plus a sinc filter and the last JPEG, in a random order.

Differences, on purpose: every draw is per image and comes from the caller's torch.Generator (the authors draw the
resize and a few more once per batch from the global RNGs), JPEG is Pillow's (the authors' DiffJPEG is a
differentiable re-implementation of the same codec), and there is no training-pair queue.

A recipe selects it with `[degrade] pipeline = "realworld"`; every probability and range below is a key of that
table (`[degrade.first]`, `[degrade.second]` for the stages).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from .degradations import draw, filter2d, jpeg
from .errors import EsrError
from .metrics import gaussian_window

KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
KERNEL_PAD = 21
"""Every kernel is zero-padded to 21 x 21 (the largest size drawn), as the authors do."""
GRAY = (0.299, 0.587, 0.114)
"""The luma weights of the authors' gray noise (torchvision's rgb_to_grayscale)."""


@dataclass(frozen=True)
class Stage:
    """One stage's probabilities and ranges; the defaults are the authors' first stage."""

    blur_prob: float = 1.0
    kernel_sizes: Sequence[int] = (7, 9, 11, 13, 15, 17, 19, 21)
    kernel_list: Sequence[str] = KERNELS
    kernel_prob: Sequence[float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    """Chance that the blur is a sinc (ringing, overshoot) instead of one of `kernel_list`."""
    blur_sigma: Sequence[float] = (0.2, 3.0)
    betag_range: Sequence[float] = (0.5, 4.0)
    """Shape of the generalized Gaussian kernels."""
    betap_range: Sequence[float] = (1.0, 2.0)
    """Shape of the plateau kernels."""
    resize_prob: Sequence[float] = (0.2, 0.7, 0.1)
    """up, down, keep."""
    resize_range: Sequence[float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    """Else Poisson noise."""
    noise_range: Sequence[float] = (1.0, 30.0)
    """Gaussian sigma in 8-bit levels."""
    poisson_scale_range: Sequence[float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: Sequence[float] = (30.0, 95.0)

    def __post_init__(self) -> None:
        if unknown := [k for k in self.kernel_list if k not in KERNELS]:
            raise EsrError(f"degrade: unknown kernel {', '.join(unknown)} (choose from {', '.join(KERNELS)})")
        if len(self.kernel_prob) != len(self.kernel_list) or len(self.resize_prob) != 3:
            raise EsrError("degrade: kernel_prob needs one value per kernel_list entry, resize_prob three (up, "
                           "down, keep)")
        if any(k % 2 == 0 or not 3 <= k <= KERNEL_PAD for k in self.kernel_sizes):
            raise EsrError(f"degrade.kernel_sizes {list(self.kernel_sizes)}: odd sizes from 3 to {KERNEL_PAD}")


SECOND = Stage(blur_prob=0.8, blur_sigma=(0.2, 1.5), resize_prob=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2),
               noise_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5))
"""The authors' second stage (its JPEG range is the final JPEG's)."""


@dataclass(frozen=True)
class RealWorld:
    """The pipeline: `pair(hr, scale, generator)` gives (LR, target) for one HR image."""

    first: Stage = field(default_factory=Stage)
    second: Stage = SECOND
    final_sinc_prob: float = 0.8
    usm: bool = True
    """Unsharp-mask the HR first (radius 50, weight 0.5, threshold 10): the degradations start from it and it is
    the target, as the authors train (their `l1_gt_usm`). Off: plain HR targets (what PSNR measures)."""

    from_hr = True
    """PatchDataset makes the LR from the HR patch through `pair` (not bicubic then `__call__`)."""
    active = True

    @classmethod
    def from_table(cls, table: Mapping) -> RealWorld:
        """A recipe's [degrade] table with `pipeline = "realworld"`; unknown keys are refused."""
        table = {k: v for k, v in table.items() if k != "pipeline"}
        top = {f.name for f in fields(cls)}
        stage_keys = {f.name for f in fields(Stage)}
        if unknown := sorted(set(table) - top):
            raise EsrError(f"[degrade] (realworld): unknown key(s) {', '.join(unknown)}; known: "
                           f"{', '.join(sorted(top | {'pipeline'}))}")
        stages = {}
        for name, default in (("first", Stage()), ("second", SECOND)):
            sub = table.pop(name, {})
            if not isinstance(sub, Mapping):
                raise EsrError(f"degrade.{name} must be a table of {', '.join(sorted(stage_keys))}")
            if unknown := sorted(set(sub) - stage_keys):
                raise EsrError(f"[degrade.{name}]: unknown key(s) {', '.join(unknown)}; known: "
                               f"{', '.join(sorted(stage_keys))}")
            stages[name] = replace(default, **{k: tuple(v) if isinstance(v, list) else v for k, v in sub.items()})
        return cls(**stages, **table)

    def __call__(self, lr: Tensor, generator: torch.Generator) -> Tensor:
        raise EsrError("the realworld pipeline degrades HR images, not LR ones: set val.degrade = false and "
                       "validate on a folder of prepared pairs (esr_cli.realworld.write_pairs)")

    def pair(self, hr: Tensor, scale: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """(3, H, W) float HR in [0, 1] -> (LR (3, H/scale, W/scale) on 8-bit levels, target (3, H, W))."""
        hr = usm_sharpen(hr) if self.usm else hr
        size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
        x = filter2d(hr, self.kernel(self.first, g)) if _chance(self.first.blur_prob, g) else hr
        x = self.resize(x, self.first, hr.shape[-2:], g)
        x = add_noise(x, self.first, g)
        x = jpeg(x.clamp(0, 1), round(draw(self.first.jpeg_range, g)))
        if _chance(self.second.blur_prob, g):
            x = filter2d(x, self.kernel(self.second, g))
        x = self.resize(x, self.second, size, g)
        x = add_noise(x, self.second, g)
        sinc = self.final_sinc(g)
        quality = round(draw(self.second.jpeg_range, g))
        if _chance(0.5, g):
            x = jpeg(filter2d(resize(x, size, _pick(RESIZE_MODES, g)), sinc).clamp(0, 1), quality)
        else:
            x = filter2d(resize(jpeg(x.clamp(0, 1), quality), size, _pick(RESIZE_MODES, g)), sinc)
        return (x.clamp(0, 1) * 255).round() / 255, hr

    def batch(self, hr: Tensor, scale: int, generators: Sequence[torch.Generator]) -> tuple[Tensor, Tensor]:
        """(N, 3, H, W) HR, one generator per image -> (LR, targets) batches."""
        pairs = [self.pair(x, scale, g) for x, g in zip(hr, generators)]
        return torch.stack([lr for lr, _ in pairs]), torch.stack([t for _, t in pairs])

    @staticmethod
    def kernel(stage: Stage, g: torch.Generator) -> Tensor:
        """One blur kernel of the stage, padded to 21 x 21."""
        size = int(_pick(stage.kernel_sizes, g))
        if _chance(stage.sinc_prob, g):
            cutoff = draw((math.pi / 3 if size < 13 else math.pi / 5, math.pi), g)
            return pad_kernel(sinc_kernel(cutoff, size))
        return pad_kernel(random_kernel(stage, size, g))

    def final_sinc(self, g: torch.Generator) -> Tensor:
        if not _chance(self.final_sinc_prob, g):
            return pad_kernel(torch.ones(1, 1, dtype=torch.float64))  # a pulse: no filtering
        size = int(_pick(self.first.kernel_sizes, g))
        return pad_kernel(sinc_kernel(draw((math.pi / 3, math.pi), g), size))

    @staticmethod
    def resize(x: Tensor, stage: Stage, base: Sequence[int], g: torch.Generator) -> Tensor:
        """Up, down or keep (drawn) relative to `base` (the HR size in the first stage, the LR size in the second)."""
        direction = _pick(("up", "down", "keep"), g, stage.resize_prob)
        lo, hi = stage.resize_range
        factor = {"up": lambda: draw((1.0, hi), g), "down": lambda: draw((lo, 1.0), g),
                  "keep": lambda: 1.0}[direction]()
        return resize(x, (max(1, int(base[0] * factor)), max(1, int(base[1] * factor))), _pick(RESIZE_MODES, g))

    def describe(self) -> str:
        return (f"realworld (Real-ESRGAN second order: blur {self.first.blur_sigma}/{self.second.blur_sigma}, noise "
                f"{self.first.noise_range}/{self.second.noise_range}, jpeg {self.first.jpeg_range}/"
                f"{self.second.jpeg_range}, final sinc p={self.final_sinc_prob}, usm {'on' if self.usm else 'off'})")


# ---- kernels -------------------------------------------------------------------------------------

def shaped_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, shape: str = "gaussian",
                  beta: float = 1.0) -> Tensor:
    """A normalised (size, size) float64 kernel of the quadratic form q = v^T S^-1 v, S = R(theta) diag(sx^2, sy^2)
    R(theta)^T: `gaussian` exp(-q / 2) (= `generalized` with beta 1), `generalized` exp(-q^beta / 2), `plateau`
    1 / (1 + q^beta). The isotropic Gaussian is `esr_cli.metrics.gaussian_window`."""
    c, s = math.cos(theta), math.sin(theta)
    rotation = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rotation @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rotation.T
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    v = torch.stack((xx, yy), -1)
    q = ((v @ torch.linalg.inv(cov)) * v).sum(-1)
    kernel = {"gaussian": lambda: torch.exp(-0.5 * q), "generalized": lambda: torch.exp(-0.5 * q**beta),
              "plateau": lambda: 1 / (q**beta + 1)}[shape]()
    return kernel / kernel.sum()


def random_kernel(stage: Stage, size: int, g: torch.Generator) -> Tensor:
    """One of the stage's kernel families (by `kernel_prob`) with its sigmas, angle and shape drawn."""
    kind = _pick(stage.kernel_list, g, stage.kernel_prob)
    sigma_x = draw(stage.blur_sigma, g)
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    sigma_y, theta = (sigma_x, 0.0) if iso else (draw(stage.blur_sigma, g), draw((-math.pi, math.pi), g))
    if kind == "iso":
        return gaussian_window(size, sigma_x)
    if kind == "aniso":
        return shaped_kernel(size, sigma_x, sigma_y, theta)
    lo, hi = stage.betag_range if kind.startswith("generalized") else stage.betap_range
    beta = draw((lo, 1.0), g) if _chance(0.5, g) else draw((1.0, hi), g)
    return shaped_kernel(size, sigma_x, sigma_y, theta, kind.split("_")[0], beta)


def sinc_kernel(cutoff: float, size: int) -> Tensor:
    """The 2-D circular low-pass (ideal sinc) kernel of cutoff frequency `cutoff` (radians), normalised."""
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    r = torch.sqrt(ax[:, None] ** 2 + ax[None, :] ** 2)
    kernel = cutoff * torch.special.bessel_j1(cutoff * r) / (2 * math.pi * r)
    kernel[size // 2, size // 2] = cutoff**2 / (4 * math.pi)
    return kernel / kernel.sum()


def pad_kernel(kernel: Tensor, size: int = KERNEL_PAD) -> Tensor:
    pad = (size - kernel.shape[-1]) // 2
    return F.pad(kernel, (pad, pad, pad, pad))


def usm_sharpen(x: Tensor, weight: float = 0.5, threshold: float = 10) -> Tensor:
    """BasicSR's USMSharp (radius 50: a 51 x 51 Gaussian, sigma 8 as OpenCV derives it from the size)."""
    kernel = gaussian_window(51, 8.0)
    residual = x - filter2d(x, kernel)
    mask = ((residual.abs() * 255) > threshold).to(x.dtype)
    soft = filter2d(mask, kernel)
    sharp = (x + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * x


# ---- resize, noise -------------------------------------------------------------------------------

def resize(x: Tensor, size: Sequence[int], mode: str) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    corners = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x[None], size=tuple(size), mode=mode, **corners)[0]


def add_noise(x: Tensor, stage: Stage, g: torch.Generator) -> Tensor:
    """Gaussian (by `gaussian_noise_prob`) or Poisson noise, gray by `gray_noise_prob`, clipped to [0, 1]."""
    if _chance(stage.gaussian_noise_prob, g):
        return gaussian_noise(x, draw(stage.noise_range, g) / 255, _chance(stage.gray_noise_prob, g), g)
    return poisson_noise(x, draw(stage.poisson_scale_range, g), _chance(stage.gray_noise_prob, g), g)


def gaussian_noise(x: Tensor, sigma: float, gray: bool, g: torch.Generator) -> Tensor:
    shape = (1 if gray else x.shape[0], *x.shape[-2:])
    return (x + sigma * torch.randn(shape, generator=g, dtype=x.dtype)).clamp(0, 1)


def poisson_noise(x: Tensor, scale: float, gray: bool, g: torch.Generator) -> Tensor:
    """Shot noise at as many photon levels as the 8-bit image has distinct values (rounded up to a power of 2)."""
    img = (torch.tensor(GRAY, dtype=x.dtype).view(3, 1, 1) * x).sum(0, keepdim=True) if gray else x
    img = (img * 255).round().clamp(0, 255) / 255
    levels = 2 ** math.ceil(math.log2(max(len(torch.unique(img)), 2)))
    noise = torch.poisson(img * levels, generator=g) / levels - img
    return (x + scale * noise).clamp(0, 1)


# ---- draws ---------------------------------------------------------------------------------------

def _chance(p: float, g: torch.Generator) -> bool:
    """True with probability p: one draw always (so that p does not shift the draws after it), 0 never, 1 always."""
    return float(torch.rand((), generator=g, dtype=torch.float64)) < p


def _pick(items: Sequence, g: torch.Generator, weights: Sequence[float] | None = None):
    if weights is None:
        return items[int(torch.randint(len(items), (), generator=g))]
    return items[int(torch.multinomial(torch.tensor(weights, dtype=torch.float64), 1, generator=g))]


# ---- prepared pairs ------------------------------------------------------------------------------

def write_pairs(files: Sequence, out, pipeline: RealWorld, scale: int, seed: int = 0) -> None:
    """HR images -> `out/HR/<stem>.png` (modcropped; the target, sharpened when `usm`) and `out/LR/<stem>.png`,
    degraded with a fixed seed per image: the `pairs` layout that `esr evaluate` and `val.folder` read."""
    import io
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from .data import read_rgb
    from .images import atomic_write

    for i, file in enumerate(files):
        hr = read_rgb(Path(file))
        hr = hr[:, :hr.shape[1] // scale * scale, :hr.shape[2] // scale * scale].float() / 255
        lr, target = pipeline.pair(hr, scale, torch.Generator().manual_seed(seed * 1_000_003 + i))
        for folder, image in (("HR", target), ("LR", lr)):
            buf = io.BytesIO()
            pixels = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
            atomic_write(Path(out) / folder / f"{Path(file).stem}.png", buf.getvalue())
