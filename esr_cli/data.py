"""Training data: random HR patches (cached in memory or read lazily), flips and 90-degree rotations, LR made on
the fly by the MATLAB bicubic (or cropped from given LR folders), optional degradations (or Real-ESRGAN's pipeline,
`esr_cli.realworld`, from the HR patch).

Every random choice of an item is drawn from a generator seeded by (seed, epoch, position in the epoch), so
the batches are a function of the iteration alone: any number of workers, any resume point, same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from .datasets import find_dataset
from .degradations import Degradations
from .errors import EsrError
from .images import IMAGE_SUFFIXES, image_size, read_image
from .resize import bicubic_downscale

CACHE_LIMIT = 2_000_000_000
"""Bytes of decoded HR pixels above which `cache = "auto"` reads images lazily."""


def resolve_folder(ref: str | Path) -> Path:
    """A folder as given, else a benchmark name or a relative path under ESR_DATA (as `esr evaluate` resolves)."""
    return find_dataset(ref)[1]


def list_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise EsrError(f"{folder}: no images in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_rgb(path: Path) -> torch.Tensor:
    """(3, H, W) uint8: gray repeated, 16-bit reduced to 8, alpha dropped."""
    pixels = read_image(path).pixels
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    x = torch.from_numpy(np.array(pixels)).permute(2, 0, 1)
    return x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x


@dataclass(frozen=True)
class PatchSpec:
    scale: int
    patch: int
    """HR patch side in pixels (a multiple of the scale)."""
    flip: bool = True
    rot90: bool = True
    seed: int = 0


class PatchDataset(Dataset):
    """Random patches; the index carries the epoch (see Sampler); batches come from `collate`."""

    def __init__(self, folders: Sequence[str | Path], spec: PatchSpec, lr_folders: Sequence[str | Path] = (),
                 degrade: Degradations | None = None, cache: str | bool = "auto", repeat: int = 1) -> None:
        if spec.patch % spec.scale:
            raise EsrError(f"patch {spec.patch} is not a multiple of the scale {spec.scale}")
        self.spec, self.degrade, self.repeat = spec, degrade, max(1, repeat)
        if getattr(degrade, "from_hr", False) and lr_folders:
            raise EsrError("degrade.pipeline = \"realworld\" makes the LR from the HR patch: drop data.lr")
        self.files = [f for folder in folders for f in list_images(resolve_folder(folder))]
        self.lr_files = self._pair(lr_folders) if lr_folders else None
        sizes = [image_size(f) for f in self.files]
        if small := [(f, hw) for f, hw in zip(self.files, sizes) if min(hw) < spec.patch]:
            f, (h, w) = small[0]
            more = f" (and {len(small) - 1} more)" if len(small) > 1 else ""
            raise EsrError(f"{f}: {w}x{h} is smaller than the {spec.patch}-pixel HR patch{more}; lower data.patch")
        in_memory = sum(3 * h * w for h, w in sizes) <= CACHE_LIMIT if cache == "auto" else bool(cache)
        self.cache = [self._load(i) for i in range(len(self.files))] if in_memory else None

    def _pair(self, lr_folders) -> list[Path]:
        by_stem = {p.stem.removesuffix(f"x{self.spec.scale}"): p
                   for folder in lr_folders for p in list_images(resolve_folder(folder))}
        if missing := [f.name for f in self.files if f.stem not in by_stem]:
            raise EsrError(f"no LR image for {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        return [by_stem[f.stem] for f in self.files]

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        hr = read_rgb(self.files[i])
        return hr, read_rgb(self.lr_files[i]) if self.lr_files else None

    @property
    def images(self) -> int:
        return len(self.files)

    def __len__(self) -> int:
        return len(self.files) * self.repeat

    def __getitem__(self, key: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Generator]:
        """(HR patch uint8, LR patch uint8 or None, this item's generator): `collate` makes the batch."""
        epoch, index = divmod(int(key), len(self))
        g = torch.Generator().manual_seed(((self.spec.seed * 1_000_003 + epoch) * 1_000_000_007 + index) % 2**63)
        hr, lr = self.cache[index % self.images] if self.cache else self._load(index % self.images)
        hr, lr = self._crop(hr, lr, g)
        draws = torch.rand(3, generator=g)
        return augment(hr, self.spec, draws), None if lr is None else augment(lr, self.spec, draws), g

    def collate(self, items: list) -> tuple[torch.Tensor, torch.Tensor]:
        """(LR (N, 3, p/s, p/s), HR (N, 3, p, p)) float in [0, 1]: one bicubic call for the batch, then the
        degradations image by image."""
        hr = torch.stack([item[0] for item in items])
        if getattr(self.degrade, "from_hr", False):  # esr_cli.realworld: the LR (and target) from the HR patch
            return self.degrade.batch(hr.float() / 255, self.spec.scale, [item[2] for item in items])
        if items[0][1] is None:
            lr = bicubic_downscale(hr, self.spec.scale).float() / 255
        else:
            lr = torch.stack([item[1] for item in items]).float() / 255
        if self.degrade is not None and self.degrade.active:
            lr = torch.stack([self.degrade(x, item[2]) for x, item in zip(lr, items)])
        return lr, hr.float() / 255

    def sample(self, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One item as a batch of one."""
        return self.collate([self[key]])

    def _crop(self, hr: torch.Tensor, lr: torch.Tensor | None, g: torch.Generator):
        s, p = self.spec.scale, self.spec.patch
        h, w = (lr.shape[-2:] if lr is not None else (hr.shape[-2] // s, hr.shape[-1] // s))
        y = int(torch.randint(h - p // s + 1, (), generator=g))
        x = int(torch.randint(w - p // s + 1, (), generator=g))
        hr_patch = hr[:, y * s:y * s + p, x * s:x * s + p]
        return hr_patch, None if lr is None else lr[:, y:y + p // s, x:x + p // s]


def augment(x: torch.Tensor, spec: PatchSpec, draws: torch.Tensor) -> torch.Tensor:
    """Horizontal flip, vertical flip, transpose, each where its draw is < 0.5: the 8 flips/rotations."""
    if spec.flip and draws[0] < 0.5:
        x = x.flip(-1)
    if spec.flip and draws[1] < 0.5:
        x = x.flip(-2)
    if spec.rot90 and draws[2] < 0.5:
        x = x.transpose(-2, -1)
    return x


class Sampler(DistributedSampler):
    """DistributedSampler (per-epoch permutation, this rank's share) that can start mid-epoch and whose indices
    carry the epoch (`epoch * len + i`), so that an item's random draws depend on where it is in the run."""

    def __init__(self, dataset: PatchDataset, rank: int = 0, world: int = 1, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def __iter__(self):
        base = self.epoch * len(self.dataset)
        return (base + i for i in islice(super().__iter__(), self.start, None))

    def __len__(self) -> int:
        return self.num_samples - self.start
