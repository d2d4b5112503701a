"""Test datasets as the SR tables use them: benchmark names under ESR_DATA, the three folder layouts, HR/LR pairs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import EsrError
from .images import IMAGE_SUFFIXES
from .resize import bicubic_downscale

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


def find_dataset(ref: str | Path) -> tuple[str, Path]:
    """(name, folder): a folder as given, else a benchmark name (Set5, B100, ...: any of its aliases) or a relative
    path (`DIV2K/DIV2K_train_HR`) under ESR_DATA. The one resolver of evaluate, training data and validation."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return canonical_name(path.name), path
    known = next((k for k in KNOWN if k.lower() == str(ref).lower()), None)
    env = os.environ.get("ESR_DATA")
    if not env:
        hint = "benchmark names are looked up under ESR_DATA" if known else "no such folder"
        raise EsrError(f"{ref}: {hint} (set ESR_DATA to the folder holding Set5, Set14, DIV2K, ...)")
    root = Path(env).expanduser()
    if known:
        entries = {p.name.lower(): p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
        found = next((entries[a.lower()] for a in KNOWN[known] if a.lower() in entries), None)
        if found is None:
            raise EsrError(f"{known}: not found under ESR_DATA={root} (looked for {', '.join(KNOWN[known])})")
        return known, found
    if not path.is_absolute() and (root / path).is_dir():
        return canonical_name(path.name), root / path
    raise EsrError(f"{ref}: no such folder (nor under ESR_DATA={root})")


def canonical_name(folder: str) -> str:
    return next((k for k, aliases in KNOWN.items() if folder.lower() in (a.lower() for a in aliases)), folder)


def images_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}


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
