"""The upscaling engine: a loaded network plus tiling, padding, batching, out-of-memory splits and self-ensemble.

Images are (N, 3, H, W) float tensors in [0, 1]; how the network is fed is `LoadedModel`'s business.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import tiling
from .errors import EsrError
from .loaded import LoadedModel
from .tiling import Sink

WHOLE_IMAGE_BYTES = 1 << 30
"""On a CPU, `tile="auto"` runs images whose activations fit in this many bytes whole (no tiles at all)."""


@dataclass
class Upscaler:
    """A loaded network, ready for images: `upscale(x)` maps (N, 3, H, W) in [0, 1] to (N, 3, sH, sW) in [0, 1]."""

    model: LoadedModel
    tile: int | str = 0
    """Core tile size in input pixels; 0 = whole image; "auto" = the largest that fits free memory."""
    tile_overlap: int | None = None
    """Context in input pixels around each tile core; outputs are feather-blended over this band. None: the
    architecture's `tile_overlap`."""
    batch_size: int = 4
    statistics: int | None = field(default=None, repr=False)
    """How many whole-image statistics the network asks for (esr_cli.tiling), once a tiled run has found out."""

    def __post_init__(self) -> None:
        self.model.for_inference()
        if self.tile_overlap is None:
            self.tile_overlap = self.model.architecture.tile_overlap

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def name(self) -> str:
        return self.model.name

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad (N, 3, h, w) at the bottom and right to the minimum size and the size multiple (reflect: closest to
        the authors' unpadded output)."""
        m, least = self.model.architecture.size_multiple, self.model.architecture.min_size
        h, w = x.shape[-2:]
        ph, pw = (-max(h, least) // m * -m - h), (-max(w, least) // m * -m - w)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")
        return x

    def _forward(self, x: torch.Tensor, window: tiling.Window | None = None) -> torch.Tensor:
        """Pad, run, crop. Windows of a tiled run are already padded."""
        h, w = x.shape[-2:]
        return self.model.forward(self._pad(x), window)[..., : h * self.scale, : w * self.scale]

    # ---- public -------------------------------------------------------------------------------

    def upscale(self, x: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """(N, 3, H, W) float in [0, 1] -> (N, 3, sH, sW) float in [0, 1], on the CPU."""
        n, c, h, w = x.shape
        out = torch.empty(n, c, h * self.scale, w * self.scale)

        def sink(y0: int, y1: int, rows: torch.Tensor) -> None:
            out[:, :, y0:y1] = rows

        self.upscale_into(x, sink, tta=tta)
        return out

    def upscale_levels(self, x: torch.Tensor, bits: int = 8, tta: bool = False,
                       progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(N, 3, H, W) in [0, 1] or uint8/uint16 levels -> (N, sH, sW, 3) uint8 (bits 8) or uint16 (bits 16),
        rounded: what image and video files hold, quantized where the network ran."""
        n, _, h, w = x.shape
        planes = np.empty((n, h * self.scale, w * self.scale, 3), dtype=np.uint16 if bits == 16 else np.uint8)

        def sink(y0: int, y1: int, rows: np.ndarray) -> None:
            planes[:, y0:y1] = rows

        self.upscale_into(x, sink, tta=tta, progress=progress, bits=bits)
        return planes

    def upscale_into(self, x: torch.Tensor, sink: Sink, tta: bool = False,
                     progress: Callable[[int], None] | None = None, bits: int | None = None) -> None:
        """Upscale x, handing finished output rows to `sink` strip by strip (bounded memory for huge images).

        x: (N, 3, H, W) float in [0, 1], or uint8/uint16 levels (converted where the network runs: less to copy).
        Rows are float (N, 3, rows, sW) tensors on the CPU, or with `bits` (N, rows, sW, 3) uint8/uint16 arrays;
        they are the sink's only during the call."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W), got {tuple(x.shape)}")
        if tta:
            out = Outbound(sink, bits, torch.device("cpu"))
            out(0, x.shape[-2] * self.scale, self_ensemble(lambda t: self.upscale(t), unit(x)))
            out.close()
            return
        if self.tile == "auto":
            tile = 0 if self.fits_whole(x) else self.auto_tile(x)
        else:
            tile = int(self.tile)
        h, w = x.shape[-2:]
        whole = tile <= 0 or (h <= tile and w <= tile)
        place = self.model.device if whole or self._blend_fits(x, tile) else torch.device("cpu")
        x = unit(x.to(place, non_blocking=True))
        out = Outbound(sink, bits, place)
        if whole:
            out(0, h * self.scale, self._forward(x))
            out.close()
            if progress:
                progress(1)
            return
        x = self._pad(x)  # once, as for the whole image: the windows are crops of what the whole run would see
        hs, ws = h * self.scale, w * self.scale

        def cropped(y0: int, y1: int, rows: torch.Tensor) -> None:
            if y0 < hs:
                out(y0, min(y1, hs), rows[:, :, : hs - y0, :ws])

        arch = self.model.architecture
        run = tiling.TiledRun(self._forward_oom_safe, self.scale, tile, self.tile_overlap,
                              math.lcm(arch.size_multiple, arch.tile_grid), arch.min_size, self.batch_size,
                              self.statistics, place)
        with cudnn_benchmark():  # every window has the same shape: the fastest kernels are worth finding
            run(x, cropped, progress)
        out.close()
        self.statistics = run.statistics

    def _blend_fits(self, x: torch.Tensor, tile: int) -> bool:
        """Whether the input, a strip of output rows and its blending copies fit in a quarter of the device's free
        memory (then tiles are cut, blended and quantized there; else on the host)."""
        if self.model.device.type == "cpu":
            return True
        n, _, h, w = x.shape
        strip = (tile + 2 * self.tile_overlap) * self.scale * w * self.scale
        return 4 * n * 3 * (h * w + 3 * strip) <= free_memory(self.model.device) / 4

    def compile(self) -> None:
        """torch.compile the network (static shapes: tiles are all the same size)."""
        self.model.module = torch.compile(self.model.module, dynamic=False)

    def _forward_oom_safe(self, batch: torch.Tensor, window: tiling.Window | None = None) -> torch.Tensor:
        """Run a batch; on out-of-memory split it (and only then) so that no tile is skipped."""
        try:
            return self._forward(batch, window)
        except torch.OutOfMemoryError:
            if batch.shape[0] == 1:
                raise EsrError("out of memory on a single tile: lower --tile") from None
            if self.model.device.type == "cuda":
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
        side = int(math.sqrt(free_memory(self.model.device) / 2 / self._bytes_per_pixel() / self.batch_size))
        side -= 2 * self.tile_overlap
        cap = 2048 if self.model.device.type == "cuda" else 192  # CPU: bigger gains little, costs memory
        return max(64, min(cap, side // 32 * 32))

    def fits_whole(self, x: torch.Tensor) -> bool:
        """Whether `tile="auto"` runs x whole (the exact output): its forward fits in half the free memory,
        and on a CPU in at most WHOLE_IMAGE_BYTES."""
        budget = free_memory(self.model.device) / 2
        if self.model.device.type == "cpu":
            budget = min(budget, WHOLE_IMAGE_BYTES)
        return x.shape[0] * x.shape[-2] * x.shape[-1] * self._bytes_per_pixel() <= budget

    def _bytes_per_pixel(self) -> int:
        """A rough forward footprint per input pixel: a dozen feature maps of the widest conv and the output."""
        channels = max((mod.out_channels for mod in self.model.module.modules() if isinstance(mod, nn.Conv2d)),
                       default=64)
        return 4 * (12 * channels + 6 * self.scale ** 2)


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


def unit(x: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1]: uint8 and uint16 levels divided by their peak (as `images.to_batch` does), floats as given."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if x.dtype == torch.uint16:
        return x.float().div_(65535.0)
    return x.float()


def levels(rows: torch.Tensor, bits: int) -> torch.Tensor:
    """(N, 3, h, w) float in [0, 1] -> (N, h, w, 3) uint8 or uint16, rounded (`images.quantize`, on rows' device).
    Works in place: rows are the caller's to give up."""
    peak, dtype = (65535.0, torch.uint16) if bits == 16 else (255.0, torch.uint8)
    return rows.clamp_(0, 1).mul_(peak).round_().to(dtype).permute(0, 2, 3, 1).contiguous()


class Outbound:
    """Finished output rows on their way to a sink: quantized where they were made (8-bit: a quarter of the float
    traffic), copied to the host without blocking through two pinned buffers that take turns, and handed to the
    sink one strip late, so that the copy of a strip overlaps the work on the next. `close()` hands the last."""

    def __init__(self, sink: Sink, bits: int | None, device: torch.device) -> None:
        self.sink, self.bits, self.cuda = sink, bits, device.type == "cuda"
        self.pending: tuple | None = None
        self.buffers: list[torch.Tensor | None] = [None, None]
        self.turn = 0

    def __call__(self, y0: int, y1: int, rows: torch.Tensor) -> None:
        if self.bits:
            rows = levels(rows, self.bits)
        done = None
        if self.cuda:
            host = self._buffer(rows)
            host.copy_(rows, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        else:
            host = rows.cpu()
        self._hand_over()
        self.pending = (y0, y1, host, done)

    def close(self) -> None:
        self._hand_over()

    def _hand_over(self) -> None:
        if self.pending is None:
            return
        y0, y1, host, done = self.pending
        self.pending = None
        if done is not None:
            done.synchronize()
        self.sink(y0, y1, host.numpy() if self.bits else host)

    def _buffer(self, rows: torch.Tensor) -> torch.Tensor:
        """This turn's pinned host buffer, grown to fit rows (the other one may still be receiving a copy)."""
        self.turn ^= 1
        buf = self.buffers[self.turn]
        if buf is None or buf.dtype != rows.dtype or buf.numel() < rows.numel():
            buf = self.buffers[self.turn] = torch.empty(rows.numel(), dtype=rows.dtype, pin_memory=True)
        return buf[:rows.numel()].view(rows.shape)


@contextlib.contextmanager
def cudnn_benchmark() -> Iterator[None]:
    """cuDNN times its algorithms for each new input shape and keeps the fastest: worth it when shapes repeat
    (tiles, video frames), a loss when every image has its own size. The process's setting is restored."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved
