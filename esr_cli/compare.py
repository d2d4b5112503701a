"""`esr evaluate --compare`: one figure of the crop where the models' outputs differ most, bicubic and HR beside."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .errors import EsrError
from .metrics import psnr, rgb_to_y
from .resize import imresize

if TYPE_CHECKING:
    from .evaluation import Protocol

def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: MATLAB `imresize(LR, scale)` of the uint8 LR, as uint8 (H, W, 3)."""
    x = torch.from_numpy(np.array(lr)).permute(2, 0, 1)[None]
    return imresize(x.expand(1, 3, *x.shape[-2:]), float(scale))[0].permute(1, 2, 0).numpy()


PANEL = 192
"""Side of each crop in the figure, in display pixels."""


@dataclass
class ComparePicker:
    """Keeps, over all images offered, the crop where the models' outputs disagree most."""

    protocol: Protocol
    score: float = -1.0
    title: str = ""
    panels: list[tuple[str, np.ndarray]] = field(default_factory=list)
    context: tuple[np.ndarray, tuple[int, int, int]] | None = None

    def offer(self, title: str, hr: np.ndarray, lr: np.ndarray, outputs: list[tuple[str, np.ndarray, float]],
              scale: int) -> None:
        """`outputs`: (label, SR uint8 (H, W, 3), per-image PSNR) for each model, on one image."""
        bicubic = bicubic_upscale(lr, scale)
        images = [sr for _, sr, _ in outputs] + ([bicubic] if len(outputs) < 2 else [])
        size = min(24 * scale, *hr.shape[:2])
        score, top, left = most_different(images, size)
        if score <= self.score:
            return
        shave, y = self.protocol.shave(scale), self.protocol.space == "y"
        self.score, self.title, self.context = score, title, (hr, (top, left, size))
        panels = [("HR", hr), (f"bicubic {psnr(bicubic, hr, shave, y):.2f} dB", bicubic)]
        panels += [(f"{label} {value:.2f} dB", sr) for label, sr, value in outputs]
        self.panels = [(label, a[top:top + size, left:left + size]) for label, a in panels]

    def save(self, path: Path) -> None:
        if self.context is None:
            raise EsrError("--compare: no image was evaluated")
        figure = compare_figure(self.title, *self.context, self.panels)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.save(path)


def most_different(images: list[np.ndarray], size: int) -> tuple[float, int, int]:
    """(score, top, left) of the size x size window with the largest mean spread of Y across `images`."""
    ys = torch.stack([rgb_to_y(torch.from_numpy(a).permute(2, 0, 1).double() / 255) for a in images])
    spread = ys.std(dim=0, correction=0)[None, None]  # (1, 1, H, W)
    stride = max(1, size // 4)
    windows = torch.nn.functional.avg_pool2d(spread, size, stride=stride)[0, 0]
    best = int(windows.argmax())
    return float(windows.max()), (best // windows.shape[1]) * stride, (best % windows.shape[1]) * stride


def compare_figure(title: str, hr: np.ndarray, where: tuple[int, int, int], panels: list[tuple[str, np.ndarray]]):
    """A PIL image: the HR with the crop marked, then each crop (nearest-neighbour enlarged) labelled below."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    top, left, size = where
    thumb_scale = PANEL / hr.shape[0]
    thumb = Image.fromarray(_rgb(hr)).resize((max(1, round(hr.shape[1] * thumb_scale)), PANEL), Image.BICUBIC)
    ImageDraw.Draw(thumb).rectangle([round(left * thumb_scale), round(top * thumb_scale),
                                     round((left + size) * thumb_scale), round((top + size) * thumb_scale)],
                                    outline=(255, 0, 0), width=2)
    gap, head, foot = 6, 24, 22
    width = thumb.width + len(panels) * (PANEL + gap) + gap
    figure = Image.new("RGB", (width + gap, head + PANEL + foot), "white")
    draw = ImageDraw.Draw(figure)
    draw.text((gap, 4), title, fill="black", font=font)
    figure.paste(thumb, (gap, head))
    x = gap + thumb.width + gap
    for label, crop in panels:
        figure.paste(Image.fromarray(_rgb(crop)).resize((PANEL, PANEL), Image.NEAREST), (x, head))
        draw.text((x, head + PANEL + 3), label, fill="black", font=font)
        x += PANEL + gap
    return figure


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a
