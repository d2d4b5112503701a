"""Degradations of the LR input for fine-tuning: Gaussian blur, Gaussian noise, JPEG (Pillow), in a set order.

A value given as a number is fixed; a two-element list [lo, hi] is drawn uniformly per image. Every draw comes
from the caller's torch.Generator, so a degraded image is a function of its seed (resumable, reproducible).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import EsrError
from .metrics import gaussian_window

Range = float | Sequence[float]
KINDS = ("blur", "noise", "jpeg")


@dataclass(frozen=True)
class Degradations:
    """What a recipe's [degrade] table holds; every kind is off unless its value is set."""

    blur_kernel: int | Sequence[int] = 0
    """Odd kernel size, or a list of sizes to pick from; 0 = no blur."""
    blur_sigma: Range = 0.0
    noise: Range = 0.0
    """Standard deviation on the [0, 1] scale (the seeds' N(0, 0.1) is 0.1)."""
    jpeg: Range = 0
    """JPEG quality, or [lo, hi]; 0 = no JPEG."""
    blur_prob: float = 1.0
    noise_prob: float = 1.0
    jpeg_prob: float = 1.0
    order: Sequence[str] = field(default=KINDS)

    def __post_init__(self) -> None:
        if unknown := [k for k in self.order if k not in KINDS]:
            raise EsrError(f"degrade.order: unknown {', '.join(unknown)} (choose from {', '.join(KINDS)})")
        kernels = [self.blur_kernel] if isinstance(self.blur_kernel, int) else list(self.blur_kernel)
        if any(k and k % 2 == 0 for k in kernels):
            raise EsrError(f"degrade.blur_kernel {self.blur_kernel}: kernel sizes must be odd")

    @classmethod
    def from_table(cls, table: Mapping) -> Degradations:
        """The [degrade] table; with `pipeline = "realworld"`, Real-ESRGAN's pipeline (`esr_cli.realworld`)."""
        if "pipeline" in table:
            if table["pipeline"] != "realworld":
                raise EsrError(f"degrade.pipeline {table['pipeline']!r}: the only pipeline is \"realworld\"")
            from .realworld import RealWorld

            return RealWorld.from_table(table)
        names = {f.name for f in fields(cls)}
        if unknown := sorted(set(table) - names):
            raise EsrError(f"[degrade]: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**table)

    @property
    def active(self) -> bool:
        return bool(self.blur_kernel) or _upper(self.noise) > 0 or _upper(self.jpeg) > 0

    def __call__(self, lr: Tensor, generator: torch.Generator) -> Tensor:
        """(3, H, W) float in [0, 1] -> degraded, clamped, rounded to 8-bit levels (as if saved and read back)."""
        for kind in self.order:
            p = getattr(self, f"{kind}_prob")
            if not self._on(kind) or (p < 1 and torch.rand((), generator=generator) >= p):
                continue
            lr = getattr(self, f"_{kind}")(lr, generator)
        return (lr.clamp(0, 1) * 255).round() / 255

    def _on(self, kind: str) -> bool:
        return {"blur": bool(self.blur_kernel), "noise": _upper(self.noise) > 0, "jpeg": _upper(self.jpeg) > 0}[kind]

    def _blur(self, x: Tensor, generator: torch.Generator) -> Tensor:
        kernels = [self.blur_kernel] if isinstance(self.blur_kernel, int) else list(self.blur_kernel)
        k = kernels[int(torch.randint(len(kernels), (), generator=generator))]
        return gaussian_blur(x, k, draw(self.blur_sigma, generator))

    def _noise(self, x: Tensor, generator: torch.Generator) -> Tensor:
        sigma = draw(self.noise, generator)
        return x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)

    def _jpeg(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return jpeg(x, round(draw(self.jpeg, generator)))


def _upper(value: Range) -> float:
    return float(value) if isinstance(value, int | float) else float(max(value))


def draw(value: Range, generator: torch.Generator) -> float:
    """A number as it is, or uniform in a [lo, hi] pair (one float64 draw)."""
    if isinstance(value, int | float):
        return float(value)
    lo, hi = value
    return lo + (hi - lo) * float(torch.rand((), generator=generator, dtype=torch.float64))


def gaussian_kernel(size: int, sigma: float) -> Tensor:
    """The normalised (size, size) Gaussian (cv2.GaussianBlur's, SSIM's window), float32."""
    return gaussian_window(size, sigma).float()


def filter2d(x: Tensor, kernel: Tensor) -> Tensor:
    """(C, H, W) or (N, C, H, W) convolved with one (k, k) kernel per channel, reflect padding (replicate where a
    side is not longer than the pad)."""
    batch = x if x.dim() == 4 else x[None]
    k = kernel.shape[-1]
    c, pad = batch.shape[1], k // 2
    mode = "reflect" if min(batch.shape[-2:]) > pad else "replicate"
    weight = kernel.to(x)[None, None].expand(c, 1, k, k)
    out = F.conv2d(F.pad(batch, (pad, pad, pad, pad), mode=mode), weight, groups=c)
    return out if x.dim() == 4 else out[0]


def gaussian_blur(x: Tensor, size: int, sigma: float) -> Tensor:
    """Blur (C, H, W) or (N, C, H, W) with a size x size Gaussian, reflect padding."""
    if sigma <= 0 or size <= 1:
        return x
    return filter2d(x, gaussian_kernel(size, sigma))


def jpeg(x: Tensor, quality: int) -> Tensor:
    """Encode (3, H, W) in [0, 1] as JPEG at `quality` with Pillow and decode it."""
    from PIL import Image

    pixels = (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        decoded = np.asarray(im.convert("RGB"))
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1).to(x.dtype) / 255


def parse_degrade(options: Sequence[str]) -> dict:
    """CLI `--degrade noise=0.1 --degrade blur=5,1.5 --degrade jpeg=30-95` -> a [degrade] table."""
    table: dict = {}
    for option in options:
        kind, _, value = option.partition("=")
        if kind not in KINDS or not value:
            raise EsrError(f"--degrade {option}: expected noise=SIGMA[-SIGMA], blur=K,SIGMA[-SIGMA] or jpeg=Q[-Q]")
        if kind == "blur":
            size, _, sigma = value.partition(",")
            table["blur_kernel"], table["blur_sigma"] = _number(size, option), _range(sigma or "0", option)
        else:
            table[kind] = _range(value, option)
    return table


def _range(text: str, option: str) -> Range:
    lo, sep, hi = text.partition("-")
    return [_number(lo, option), _number(hi, option)] if sep else _number(lo, option)


def _number(text: str, option: str):
    try:
        value = float(text)
    except ValueError:
        raise EsrError(f"--degrade {option}: {text!r} is not a number") from None
    return int(value) if value.is_integer() and "." not in text else value


def describe(d: Degradations) -> str:
    """One line for the logs, in the order applied."""
    if not isinstance(d, Degradations):
        return d.describe()
    text = {"blur": f"blur k={d.blur_kernel} sigma={d.blur_sigma}", "noise": f"noise sigma={d.noise}",
            "jpeg": f"jpeg q={d.jpeg}"}
    parts = [text[kind] for kind in d.order if d._on(kind)]
    return " -> ".join(parts) if parts else "none"

