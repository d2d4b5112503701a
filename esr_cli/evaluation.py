"""Benchmark evaluation as the SR tables do it: datasets, PSNR/SSIM per image and mean, published figures beside."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .engine import Upscaler
from .images import Picture, quantize, to_batch
from .errors import EsrError
from .metrics import psnr, rgb_to_y, ssim
from .resize import bicubic_downscale, imresize

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
KNOWN = {  # benchmark name -> folder names it goes by under ESR_DATA
    "Set5": ("Set5",), "Set14": ("Set14",), "B100": ("B100", "BSD100", "BSDS100"),
    "Urban100": ("Urban100",), "Manga109": ("Manga109",), "DIV2K-val": ("DIV2K-val", "DIV2K_valid", "DIV2K_val"),
}


@dataclass(frozen=True)
class Pair:
    """One test image: its HR file and its LR file (None: made from the HR by MATLAB bicubic)."""

    name: str
    hr: Path
    lr: Path | None


@dataclass(frozen=True)
class Dataset:
    name: str
    """The benchmark name (`Set5`, ...) or the folder's name."""
    pairs: tuple[Pair, ...]
    layout: str
    """`edsr` (HR/ + LR_bicubic/X{s}/), `pairs` (HR/ + LR/ by stem) or `hr` (LR generated)."""


@dataclass
class ImageResult:
    name: str
    psnr: float
    ssim: float


@dataclass
class Result:
    """One model on one dataset: mean and per-image figures, and the authors' figure when the plugin has one."""

    model: str
    dataset: str
    scale: int
    psnr: float
    ssim: float
    images: list[ImageResult] = field(default_factory=list)
    published: tuple[float, float | None] | None = None

    @property
    def difference(self) -> float | None:
        return None if self.published is None else self.psnr - self.published[0]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["published"] = None if self.published is None else {"psnr": self.published[0], "ssim": self.published[1]}
        d["difference"] = self.difference
        return d


# ---- datasets ----------------------------------------------------------------------------------

def data_root() -> Path:
    env = os.environ.get("ESR_DATA")
    if not env:
        raise EsrError("benchmark names are looked up under ESR_DATA: set it to the folder holding Set5, Set14, ...")
    return Path(env).expanduser()


def find_dataset(ref: str | Path) -> tuple[str, Path]:
    """(name, folder) of a dataset given as a folder or as a known benchmark name under ESR_DATA."""
    path = Path(ref)
    if path.is_dir():
        return canonical_name(path.name), path
    known = next((k for k in KNOWN if k.lower() == str(ref).lower()), None)
    if known is None:
        raise EsrError(f"{ref}: no such folder, and not a known benchmark ({', '.join(KNOWN)})")
    root = data_root()
    entries = {p.name.lower(): p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
    for alias in KNOWN[known]:
        if alias.lower() in entries:
            return known, entries[alias.lower()]
    raise EsrError(f"{known}: not found under ESR_DATA={root} (looked for {', '.join(KNOWN[known])})")


def canonical_name(folder: str) -> str:
    return next((k for k, aliases in KNOWN.items() if folder.lower() in (a.lower() for a in aliases)), folder)


def images_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def load_dataset(ref: str | Path, scale: int) -> Dataset:
    """Recognise the layout: EDSR (HR/ + LR_bicubic/X{s}/{stem}x{s}.png), HR/ + LR/ by stem, or HR images alone."""
    name, root = find_dataset(ref)
    hr_dir = root / "HR" if (root / "HR").is_dir() else root
    hr = images_in(hr_dir)
    if not hr:
        raise EsrError(f"{hr_dir}: no images")
    edsr = root / "LR_bicubic" / f"X{scale}"
    if hr_dir != root and edsr.is_dir():
        lr = {stem.removesuffix(f"x{scale}"): p for stem, p in images_in(edsr).items()}
        layout = "edsr"
    elif hr_dir != root and (root / "LR").is_dir():
        lr, layout = images_in(root / "LR"), "pairs"
    else:
        lr, layout = {}, "hr"
    if layout != "hr" and (missing := sorted(set(hr) - set(lr))):
        raise EsrError(f"{root}: no LR image for {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    return Dataset(name, tuple(Pair(stem, path, lr.get(stem)) for stem, path in hr.items()), layout)


# ---- one image -----------------------------------------------------------------------------------

def read_rgb8(path: Path) -> np.ndarray:
    """An 8-bit image file as uint8 (H, W, C), C = 1 for gray or 3."""
    from .images import read_image

    pixels = read_image(path).pixels
    if pixels.dtype != np.uint8:
        raise EsrError(f"{path}: the benchmarks are 8-bit images; this one is {pixels.dtype}")
    return pixels


def load_pair(pair: Pair, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR cropped to LR * scale, LR), both uint8 (H, W, C) as in the file (gray stays one channel)."""
    hr = read_rgb8(pair.hr)
    if pair.lr is None:
        lr = bicubic_downscale(torch.from_numpy(np.array(hr)).permute(2, 0, 1), scale).permute(1, 2, 0).numpy()
    else:
        lr = read_rgb8(pair.lr)
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if hr.shape[0] < h or hr.shape[1] < w:
        raise EsrError(f"{pair.lr}: x{scale} of it is {w}x{h}, larger than its HR {hr.shape[1]}x{hr.shape[0]}")
    return hr[:h, :w], lr


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: MATLAB `imresize(LR, scale)` of the uint8 LR, as uint8 (H, W, 3)."""
    x = torch.from_numpy(np.array(lr)).permute(2, 0, 1)[None]
    return imresize(x.expand(1, 3, *x.shape[-2:]), float(scale))[0].permute(1, 2, 0).numpy()


# ---- evaluation ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Protocol:
    """How figures are computed: Y (tables) or RGB (NTIRE), border shaved (None: the scale)."""

    space: str = "y"
    border: int | None = None
    self_ensemble: bool = False

    def shave(self, scale: int) -> int:
        return scale if self.border is None else self.border

    def is_tables(self, scale: int) -> bool:
        """The protocol of the published benchmark tables: Y channel, `scale` pixels shaved."""
        return self.space == "y" and self.shave(scale) == scale and not self.self_ensemble


def evaluate(models: Sequence[str | Path | Upscaler], datasets: Sequence[str | Path], scale: int | None = None,
             self_ensemble: bool = False, precision: str = "fp32", device: str = "auto", tile: int | str = 0,
             metric_space: str = "y", border: int | None = None, save_images: str | Path | None = None,
             compare: str | Path | None = None, progress: bool = False, arch: str | None = None) -> list[Result]:
    """Every model on every dataset: a Result per (dataset, model), in that order.

    Models are zoo names, weights files or loaded Upscalers; datasets are folders or known benchmark names
    (under ESR_DATA). `compare` writes a PNG of crops where the models differ most."""
    from .models import load_model

    if metric_space not in ("y", "rgb"):
        raise EsrError(f"--metric-space {metric_space}: choose y or rgb")
    upscalers = [m if isinstance(m, Upscaler) else
                 load_model(m, scale=scale, arch=arch, device=device, precision=precision, tile=tile,
                            quiet=not progress)
                 for m in models]
    protocol = Protocol(metric_space, border, self_ensemble)
    picker = ComparePicker(protocol) if compare else None
    results = []
    for ref in datasets:
        for s in sorted({u.scale for u in upscalers}):
            group = [u for u in upscalers if u.scale == s]
            results += evaluate_dataset(group, load_dataset(ref, s), s, protocol, save_images, picker, progress)
    if picker:
        picker.save(Path(compare))
    return results


def evaluate_dataset(upscalers: list[Upscaler], dataset: Dataset, scale: int, protocol: Protocol,
                     save_images: str | Path | None = None, picker: ComparePicker | None = None,
                     progress: bool = False) -> list[Result]:
    """Models of one scale over one dataset, image by image (each image is read once for all models)."""
    from tqdm import tqdm

    shave, y = protocol.shave(scale), protocol.space == "y"
    per_model: list[list[ImageResult]] = [[] for _ in upscalers]
    for pair in tqdm(dataset.pairs, desc=f"{dataset.name} x{scale}", unit="img", disable=not progress, leave=False):
        hr, lr = load_pair(pair, scale)
        x = to_batch(Picture(lr))  # gray repeated to three channels, as EDSR/BasicSR do
        outputs = []
        for upscaler, rows in zip(upscalers, per_model):
            sr = quantize(upscaler.upscale(x, tta=protocol.self_ensemble), 8)[0]
            rows.append(ImageResult(pair.name, psnr(sr, hr, shave, y), ssim(sr, hr, shave, y)))
            outputs.append((upscaler.name, sr, rows[-1].psnr))
            if save_images:
                save_output(Path(save_images) / slug(upscaler.name) / dataset.name / f"{pair.name}.png", sr)
        if picker:
            picker.offer(f"{dataset.name} / {pair.name}  x{scale}", hr, lr, outputs, scale)
    return [Result(u.name, dataset.name, scale, _mean(r, "psnr"), _mean(r, "ssim"), r,
                   published(u, dataset.name) if protocol.is_tables(scale) else None)
            for u, r in zip(upscalers, per_model)]


def _mean(rows: list[ImageResult], key: str) -> float:
    return float(np.mean([getattr(r, key) for r in rows])) if rows else math.nan


def published(upscaler: Upscaler, dataset: str) -> tuple[float, float | None] | None:
    """The authors' (PSNR, SSIM) for this weights file on this benchmark, if its plugin declares them."""
    weights = upscaler.model.weights
    table = weights.published if weights else {}
    return next((v for k, v in table.items() if canonical_name(k) == dataset), None)


def slug(name: str) -> str:
    """A model name usable as a folder name (a weights path becomes its stem)."""
    return Path(name).stem if ("/" in name or "\\" in name) else name


def save_output(path: Path, image: np.ndarray) -> None:
    from .images import Picture, write_image

    write_image(path, Picture(image))


# ---- --compare: crops where the models differ most ------------------------------------------------

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
