"""Benchmark evaluation as the SR tables do it: PSNR/SSIM per image and mean, the authors' figures beside.

Datasets (names, layouts, pairs) are `datasets`; the --compare figure is `compare`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .compare import ComparePicker
from .datasets import Dataset, canonical_name, load_dataset, load_pair
from .engine import Upscaler
from .errors import EsrError
from .images import Picture, to_batch
from .metrics import SSIM_WINDOW, psnr, ssim
from .sharding import Shard, combine_files, gather, process_group, share


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

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        pub = d["published"]
        return cls(d["model"], d["dataset"], d["scale"], d["psnr"], d["ssim"], [ImageResult(**i) for i in d["images"]],
                   None if pub is None else (pub["psnr"], pub["ssim"]))


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
             compare: str | Path | None = None, progress: bool = False, arch: str | None = None,
             shard=None, combine: str | Path | None = None) -> list[Result] | None:
    """Every model on every dataset: a Result per (dataset, model), in that order.

    Models are zoo names, weights files or loaded Upscalers; datasets are folders or known benchmark names
    (under ESR_DATA). `compare` writes a PNG of crops where the models differ most.

    `shard` (an `esr_cli.sharding.Shard`): this process evaluates its share of each dataset's images (balanced by
    pixels) and the shares are joined into the same Results a single process gives: over torch.distributed under
    torchrun (every rank gets them), else through files beside `combine` (the last shard to finish gets them, the
    others None)."""
    from .models import load_model

    if metric_space not in ("y", "rgb"):
        raise EsrError(f"--metric-space {metric_space}: choose y or rgb")
    shard = shard or Shard()
    sharded = shard.sharded
    if sharded and compare:
        raise EsrError("--compare picks crops over every image: run it without shards")
    if sharded and shard.launcher != "torchrun" and combine is None:
        raise EsrError(f"{shard.label} ({shard.launcher}): give --json FILE, where the last shard to finish writes "
                       "every shard's results")
    upscalers = [m if isinstance(m, Upscaler) else
                 load_model(m, scale=scale, arch=arch, device=device, precision=precision, tile=tile,
                            quiet=not progress)
                 for m in models]
    protocol = Protocol(metric_space, border, self_ensemble)
    picker = ComparePicker(protocol) if compare else None
    results, orders = [], []
    with process_group(shard, str(upscalers[0].model.device) if upscalers else "cpu"):
        for ref in datasets:
            for s in sorted({u.scale for u in upscalers}):
                group = [u for u in upscalers if u.scale == s]
                dataset = load_dataset(ref, s)
                only = _share(dataset, shard) if sharded else None
                part = evaluate_dataset(group, dataset, s, protocol, save_images, picker, progress, only=only)
                results += part
                orders += [[p.name for p in dataset.pairs]] * len(part)
        if not sharded:
            if picker:
                picker.save(Path(compare))
            return results
        parts = gather(results)
    if parts is None:
        found = combine_files(Path(combine), shard, [r.to_dict() for r in results])
        if found is None:
            return None
        parts = [[Result.from_dict(d) for d in part] for part in found]
    return [joined([part[j] for part in parts], order) for j, order in enumerate(orders)]


def _share(dataset: Dataset, shard) -> list[int]:
    """This shard's images of the dataset, balanced by HR pixels (read from the file headers)."""
    from .images import header_pixels

    return share(range(len(dataset.pairs)), [header_pixels(p.hr) for p in dataset.pairs], shard)


def joined(parts: list[Result], order: list[str]) -> Result:
    """The Result of one (model, dataset) from the shards' Results over parts of its images, as one process
    computes it: every image in the dataset's order, the means over them all."""
    position = {name: i for i, name in enumerate(order)}
    images = sorted((i for part in parts for i in part.images), key=lambda i: position[i.name])
    first = parts[0]
    return Result(first.model, first.dataset, first.scale, _mean(images, "psnr"), _mean(images, "ssim"), images,
                  first.published)


def evaluate_dataset(upscalers: list[Upscaler], dataset: Dataset, scale: int, protocol: Protocol,
                     save_images: str | Path | None = None, picker: ComparePicker | None = None,
                     progress: bool = False, degrade: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                     only: Sequence[int] | None = None) -> list[Result]:
    """Models of one scale over one dataset, image by image (each image is read once for all models).
    `degrade(lr, index)` alters each LR (1, 3, h, w) in [0, 1] first (training's degraded validation); `only`: the
    indices of the images to evaluate (a shard's share), else all."""
    from tqdm import tqdm

    shave, y = protocol.shave(scale), protocol.space == "y"
    per_model: list[list[ImageResult]] = [[] for _ in upscalers]
    indices = range(len(dataset.pairs)) if only is None else only
    for i in tqdm(indices, desc=f"{dataset.name} x{scale}", unit="img", disable=not progress, leave=False):
        pair = dataset.pairs[i]
        hr, lr = load_pair(pair, scale)
        if min(hr.shape[:2]) - 2 * shave < SSIM_WINDOW:
            raise EsrError(f"{dataset.name}/{pair.name}: {hr.shape[1]}x{hr.shape[0]} less a border of {shave} "
                           f"leaves less than the {SSIM_WINDOW}x{SSIM_WINDOW} that SSIM needs (see --border)")
        x = to_batch(Picture(lr))  # gray repeated to three channels, as EDSR/BasicSR do
        if degrade is not None:
            x = degrade(x, i)
        outputs = []
        for upscaler, rows in zip(upscalers, per_model):
            sr = upscaler.upscale_levels(x, 8, tta=protocol.self_ensemble)[0]
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
