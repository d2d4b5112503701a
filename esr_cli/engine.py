"""The upscaling engine: a loaded network plus tiling, precision, batching and self-ensemble.

Images are (N, 3, H, W) float tensors in [0, 1]; every other input range is the engine's business.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import tiling
from .architecture import Architecture, Weights
from .errors import EsrError

Sink = Callable[[int, int, torch.Tensor], None]
"""Receives finished output rows: sink(y0, y1, rows) with rows (N, 3, y1 - y0, W * scale) float in [0, 1]."""

WHOLE_IMAGE_BYTES = 1 << 30
"""On a CPU, `tile="auto"` runs images whose activations fit in this many bytes whole (no tiles at all)."""

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EsrError("--device cuda: no CUDA GPU is available (is the CUDA build of PyTorch installed?)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise EsrError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) present")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise EsrError("--device mps: Apple MPS is not available on this machine")
    return device


def cpu_has_native_bf16() -> bool:
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_precision(precision: str, device: torch.device, architecture: Architecture) -> str:
    """`auto`: fp16 on CUDA, bf16 on a CPU with native bf16, where the architecture declares it safe; else fp32."""
    if precision != "auto":
        if precision not in DTYPES:
            raise EsrError(f"--precision {precision}: choose auto, fp32, fp16 or bf16")
        return precision
    if device.type == "cuda":
        wanted = ["fp16", "bf16"] if torch.cuda.is_bf16_supported() else ["fp16"]
    elif device.type == "cpu":
        wanted = ["bf16"] if cpu_has_native_bf16() else []
    else:
        wanted = ["fp16"]
    return next((p for p in wanted if p in architecture.precisions), "fp32")


@dataclass
class Upscaler:
    """A network ready to run: `upscale(x)` maps (N, 3, H, W) in [0, 1] to (N, 3, sH, sW) in [0, 1]."""

    module: nn.Module
    architecture: Architecture
    config: Any
    weights: Weights | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    tile: int | str = 0
    """Core tile size in input pixels; 0 = whole image; "auto" = the largest that fits free memory."""
    tile_overlap: int | None = None
    """Context in input pixels around each tile core; outputs are feather-blended over this band. None: the
    architecture's `tile_overlap`."""
    batch_size: int = 4
    source: str = ""
    fallbacks: int = 0
    """How many tiles were recomputed in fp32 because low precision gave non-finite values."""
    statistics: int | None = field(default=None, repr=False)
    """How many whole-image statistics the network asks for (esr_cli.tiling), once a tiled run has found out."""

    def __post_init__(self) -> None:
        if self.tile_overlap is None:
            self.tile_overlap = self.architecture.tile_overlap
        self.module.eval().requires_grad_(False)
        memory_format = torch.channels_last if self.device.type == "cpu" else torch.preserve_format
        self.module.to(self.device, memory_format=memory_format)
        if self.device.type == "cuda" and self.precision == "fp32":
            # fp32 means fp32: TF32 convolutions (PyTorch's default on Ampere+) would shift the published figures.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def name(self) -> str:
        return self.weights.name if self.weights else self.source or self.architecture.name

    # ---- running the network on one batch ----------------------------------------------------------

    def _autocast(self, precision: str):
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[precision])

    def _run(self, x: torch.Tensor, window: tiling.Window | None = None) -> torch.Tensor:
        """Network on an already padded batch on the device; falls back to fp32 on non-finite output."""
        r = self.architecture.input_range
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast(self.precision), tiling.running(window):
            y = self.module(x * r).float()
        if self.precision != "fp32" and not torch.isfinite(y).all():
            self.fallbacks += 1  # autocast keeps the weights in fp32: rerun without it
            with torch.inference_mode(), tiling.running(window):
                y = self.module(x * r).float()
        return (y / r).clamp_(0, 1)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad (N, 3, h, w) at the bottom and right to the minimum size and the size multiple (reflect: closest to
        the authors' unpadded output)."""
        m, least = self.architecture.size_multiple, self.architecture.min_size
        h, w = x.shape[-2:]
        ph, pw = (-max(h, least) // m * -m - h), (-max(w, least) // m * -m - w)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
        return x

    def _forward(self, x: torch.Tensor, window: tiling.Window | None = None) -> torch.Tensor:
        """Pad, run, crop. Windows of a tiled run are already padded."""
        h, w = x.shape[-2:]
        y = self._run(self._pad(x).to(self.device), window)
        return y[..., : h * self.scale, : w * self.scale]

    # ---- public -------------------------------------------------------------------------------

    def upscale(self, x: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """(N, 3, H, W) float in [0, 1] -> (N, 3, sH, sW) float in [0, 1], on the CPU."""
        n, c, h, w = x.shape
        out = torch.empty(n, c, h * self.scale, w * self.scale)

        def sink(y0: int, y1: int, rows: torch.Tensor) -> None:
            out[:, :, y0:y1] = rows

        self.upscale_into(x, sink, tta=tta)
        return out

    def upscale_into(self, x: torch.Tensor, sink: Sink, tta: bool = False,
                     progress: Callable[[int], None] | None = None) -> None:
        """Upscale x, handing finished output rows to `sink` strip by strip (bounded memory for huge images)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W), got {tuple(x.shape)}")
        x = x.float()
        if tta:
            sink(0, x.shape[-2] * self.scale, self_ensemble(lambda t: self.upscale(t), x))
            return
        if self.tile == "auto":
            tile = 0 if self.fits_whole(x) else self.auto_tile(x)
        else:
            tile = int(self.tile)
        if tile <= 0 or (x.shape[-2] <= tile and x.shape[-1] <= tile):
            sink(0, x.shape[-2] * self.scale, self._forward(x).cpu())
            if progress:
                progress(1)
            return
        h, w = x.shape[-2:]
        x = self._pad(x)  # once, as for the whole image: the windows are crops of what the whole run would see
        hs, ws = h * self.scale, w * self.scale

        def cropped(y0: int, y1: int, rows: torch.Tensor) -> None:
            if y0 < hs:
                sink(y0, min(y1, hs), rows[:, :, : hs - y0, :ws])

        self._tiled(x, tile, cropped, progress)

    def compile(self) -> None:
        """torch.compile the network (static shapes: tiles are all the same size)."""
        self.module = torch.compile(self.module, dynamic=False)

    # ---- tiling -------------------------------------------------------------------------------

    def _tiled(self, x: torch.Tensor, tile: int, sink: Sink, progress) -> None:
        """Windows row by row; finished rows go to the sink, so only one strip of output is held. The blending
        weights are separable (row ramps times column ramps), so their sum is kept as two vectors. Whole-image
        statistics are gathered first (esr_cli.tiling)."""
        s, m = self.scale, self.tile_overlap
        grid, least = math.lcm(self.architecture.size_multiple, self.architecture.tile_grid), self.architecture.min_size
        n, c, h, w = x.shape
        rows, cols = list(_spans(h, tile, m, grid, least)), list(_spans(w, tile, m, grid, least))
        statistics = tiling.Statistics((h, w), n)
        self._gather(x, rows, cols, statistics)
        wx = [_ramp(d0, d1, f0, f1, w, m, s) for d0, d1, f0, f1 in cols]
        col_sum = torch.zeros(w * s)
        for (_, _, f0, f1), ramp in zip(cols, wx):
            col_sum[f0 * s:f1 * s] += ramp
        top = 0  # first output row not yet handed to the sink; acc holds rows [top, ...)
        acc, row_sum = torch.zeros(n, c, 0, w * s), torch.zeros(0)
        for c0, c1, e0, e1 in rows:
            grow = e1 * s - top - acc.shape[2]
            acc = torch.cat([acc, acc.new_zeros(n, c, grow, w * s)], 2)
            skip = top - e0 * s  # window rows already final: their weight here is zero
            wy = _ramp(c0, c1, e0, e1, h, m, s)[skip:]
            row_sum = torch.cat([row_sum, row_sum.new_zeros(grow)])
            row_sum[:len(wy)] += wy
            for group, batch, window in self._batches(x, (c0, c1, e0, e1), cols, statistics):
                ys = self._forward_oom_safe(batch, window)
                for k, j in enumerate(group):
                    f0, f1 = cols[j][2] * s, cols[j][3] * s
                    acc[:, :, :, f0:f1] += ys[k * n:(k + 1) * n, :, skip:].cpu() * (wy[:, None] * wx[j])
                del ys
                if progress:
                    progress(len(group))
            done = h * s if c1 == h else int((c1 - m / 2) * s)
            k = done - top
            sink(top, done, acc[:, :, :k].div_(row_sum[:k, None]).div_(col_sum))
            acc, row_sum, top = acc[:, :, k:].clone(), row_sum[k:].clone(), done  # clone: frees the strip

    def _batches(self, x: torch.Tensor, row: tuple[int, int, int, int], cols: list, statistics: tiling.Statistics):
        """The windows of one row of tiles, `batch_size` at a time: (column indices, batch, where they lie)."""
        n, (c0, c1, e0, e1) = x.shape[0], row
        for i in range(0, len(cols), self.batch_size):
            group = range(i, min(i + self.batch_size, len(cols)))
            batch = torch.cat([x[:, :, e0:e1, cols[j][2]:cols[j][3]] for j in group])
            window = tiling.Window(statistics, [(e0, cols[j][2]) for j in group for _ in range(n)],
                                   [(c0 - e0, c1 - e0, cols[j][0] - cols[j][2], cols[j][1] - cols[j][2])
                                    for j in group for _ in range(n)],
                                   [image for _ in group for image in range(n)])
            yield group, batch, window

    def _gather(self, x: torch.Tensor, rows: list, cols: list, statistics: tiling.Statistics) -> None:
        """One pass over the windows per whole-image statistic the network asks for; each pass stops the network
        at that statistic. A pass whose first forward runs through means there are no more (remembered)."""
        statistics.gathering = True
        while self.statistics is None or len(statistics.known) < self.statistics:
            if not self._gathering_pass(x, rows, cols, statistics):
                self.statistics = len(statistics.known)
                break
            statistics.close()
        statistics.gathering = False

    def _gathering_pass(self, x: torch.Tensor, rows: list, cols: list, statistics: tiling.Statistics) -> bool:
        """Sums the next statistic over every window; False if the network asks for none (a forward ran through)."""
        for row in rows:
            for _, batch, window in self._batches(x, row, cols, statistics):
                try:
                    self._forward_oom_safe(batch, window)
                    return False
                except tiling.Collected:
                    pass
        return True

    def _forward_oom_safe(self, batch: torch.Tensor, window: tiling.Window | None = None) -> torch.Tensor:
        """Run a batch; on out-of-memory split it (and only then) so that no tile is skipped."""
        try:
            return self._forward(batch, window)
        except torch.OutOfMemoryError:
            if batch.shape[0] == 1:
                raise EsrError("out of memory on a single tile: lower --tile") from None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            parts, collected = [], False
            for half in (slice(None, batch.shape[0] // 2), slice(batch.shape[0] // 2, None)):
                try:
                    parts.append(self._forward_oom_safe(batch[half], window and window[half]))
                except tiling.Collected:  # a gathering pass: both halves must add their pixels
                    collected = True
            if collected:
                raise tiling.Collected
            return torch.cat(parts)

    def auto_tile(self, x: torch.Tensor) -> int:
        """The largest tile (multiple of 32) whose forward fits in about half of the free memory."""
        side = int(math.sqrt(free_memory(self.device) / 2 / self._bytes_per_pixel() / self.batch_size))
        side -= 2 * self.tile_overlap
        cap = 2048 if self.device.type == "cuda" else 192  # CPU: bigger gains little, costs memory
        return max(64, min(cap, side // 32 * 32))

    def fits_whole(self, x: torch.Tensor) -> bool:
        """Whether `tile="auto"` runs x whole (the exact output): its forward fits in half the free memory,
        and on a CPU in at most WHOLE_IMAGE_BYTES."""
        budget = free_memory(self.device) / 2
        if self.device.type == "cpu":
            budget = min(budget, WHOLE_IMAGE_BYTES)
        return x.shape[0] * x.shape[-2] * x.shape[-1] * self._bytes_per_pixel() <= budget

    def _bytes_per_pixel(self) -> int:
        """A rough forward footprint per input pixel: a dozen feature maps of the widest conv and the output."""
        channels = max((mod.out_channels for mod in self.module.modules() if isinstance(mod, nn.Conv2d)),
                       default=64)
        return 4 * (12 * channels + 6 * self.scale ** 2)


def _spans(length: int, tile: int, margin: int, grid: int = 1, least: int = 1) -> Iterator[tuple[int, int, int, int]]:
    """Cores [c0, c1) partitioning [0, length) into pieces of about `tile`, each with an equal-size window
    [e0, e1) around it (the core plus at least `margin` context, at least `least` long, shifted to stay inside the
    image). Windows start on multiples of `grid` and their size is congruent to `length` modulo `grid`, so that
    the last one ends on the image's edge and strided or pooled layers see the image's pixel grid in every window."""
    n = math.ceil(length / tile)
    bounds = [min(round(i * length / n / grid) * grid, length) for i in range(n)] + [length]
    core = max(b - a for a, b in zip(bounds, bounds[1:]))
    need = max(core + 2 * margin + grid - 1, least)
    size = min(length, need + (length - need) % grid)
    for c0, c1 in zip(bounds, bounds[1:]):
        if c0 < c1:
            e0 = min(max(c0 - margin, 0) // grid * grid, length - size)
            yield c0, c1, e0, e0 + size


def _ramp(c0: int, c1: int, e0: int, e1: int, length: int, margin: int, scale: int) -> torch.Tensor:
    """Blending weights over a window's output pixels: 1 inside the core, falling linearly to 0 across a band
    of `margin` input pixels centred on each core edge that has a neighbour (neighbours' weights sum to 1)."""
    x = (torch.arange((e1 - e0) * scale, dtype=torch.float32) + 0.5) / scale + e0
    band = max(margin, 1e-6)
    w = torch.ones_like(x)
    if c0 > 0:
        w = w * (0.5 + (x - c0) / band).clamp(0, 1)
    if c1 < length:
        w = w * (0.5 + (c1 - x) / band).clamp(0, 1)
    return w


def self_ensemble(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """x8 geometric self-ensemble (EDSR+): average of run() over the 8 flips/rotations, each undone."""
    total = None
    for k in range(4):
        for flip in (False, True):
            t = torch.rot90(x, k, (-2, -1))
            t = t.flip(-1) if flip else t
            y = run(t)
            y = y.flip(-1) if flip else y
            y = torch.rot90(y, -k, (-2, -1))
            total = y if total is None else total + y
    return total / 8


def free_memory(device: torch.device) -> int:
    """Bytes free for tensors on the device (CUDA: mem_get_info; CPU: MemAvailable)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30
