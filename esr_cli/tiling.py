"""Whole-image operations that stay exact when the engine tiles.

Some networks look at the whole image, not only at a neighbourhood of each pixel:
- a channel attention squeezes each channel to its mean and standard deviation over the image (IMDN's CCA, MDRN's
  ECCA), or a normalisation divides by its norm over the image (SAFMN's GRN);
- a spatial attention pools with a stride, then stretches the pooled map back to the image size (RLFN and RFDN's
  ESA, MDRN's MDSA): where each pixel samples the pooled map depends on the size of the whole image.

Run on a tile, those ops see the tile instead of the image, and the output of a tiled run is not the output of the
whole image (RLFN, tiles of 64: a fifth of the pixels differ, by up to 70 levels). A plugin writes these ops with
the functions below. Outside a tiled run they are the plain formulas, unchanged. While the engine runs a batch of
windows it says where they lie in the image (`Window`):
- `upsample` samples the pooled map where the whole image samples it; the engine starts every window on a multiple
  of the pooling stride (the architecture's `tile_grid`) so that the window pools on the image's grid;
- `adaptive_max_pool` pools the image's cells (uneven when a side is not a multiple of the factor) and
  `upsample_nearest` spreads them back over the same pixels as the whole image (SAFMN's SAFM);
- `mean_std` and `l2_norm` return the whole image's figures. The engine gathers them first, one pass over the
  windows per statistic in the order the network asks for them: each pass sums the pixels that each window owns
  (the windows' cores partition the image) and stops the network there (`Collected`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


class Collected(Exception):
    """Raised by a statistic that a gathering pass has just summed: the rest of that forward is not needed."""


@dataclass
class Statistics:
    """The whole-image statistics of one tiled batch of images, in the order the network asks for them."""

    size: tuple[int, int]
    """Height and width of the whole (padded) image in input pixels."""
    images: int
    gathering: bool = False
    """True during a gathering pass: the first statistic not yet known is summed, then `Collected` is raised."""
    known: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    """Per statistic: the sums of x and of x**2 over each image, (images, C) float64."""
    partial: tuple[torch.Tensor, torch.Tensor] | None = None
    """The statistic being gathered: its sums so far."""

    def add(self, image: int, owned: torch.Tensor) -> None:
        """Adds the pixels (C, h, w) of `image` that one window owns to the statistic being gathered."""
        owned = owned.double()
        if self.partial is None:
            self.partial = tuple(torch.zeros(self.images, owned.shape[0], dtype=torch.float64) for _ in range(2))
        self.partial[0][image] += owned.sum(dim=(1, 2)).cpu()
        self.partial[1][image] += owned.pow(2).sum(dim=(1, 2)).cpu()

    def close(self) -> None:
        """Ends a gathering pass: the statistic summed over every window becomes known."""
        self.known.append(self.partial)
        self.partial = None


@dataclass
class Window:
    """Where each element of a batch of windows lies: element b is a crop of image `images[b]` whose top-left pixel
    is `origins[b]` (row, column) in the image, and it owns the pixels `cores[b]` (row0, row1, col0, col1 in its own
    coordinates)."""

    statistics: Statistics
    origins: list[tuple[int, int]]
    cores: list[tuple[int, int, int, int]]
    images: list[int]
    calls: int = 0

    def __getitem__(self, part: slice) -> Window:
        return Window(self.statistics, self.origins[part], self.cores[part], self.images[part])

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """This call's statistic over the whole image: sums of x and x**2 per channel, (B, C, 1, 1) float64, and
        the number of pixels."""
        stats, index = self.statistics, self.calls
        self.calls += 1
        count = stats.size[0] * stats.size[1]
        if index < len(stats.known):
            s1, s2 = (s[self.images][:, :, None, None] for s in stats.known[index])
            return s1.to(x.device), s2.to(x.device), count
        if not stats.gathering or index > len(stats.known):
            raise RuntimeError("whole-image statistic asked for before it was gathered")
        for b, (r0, r1, c0, c1) in enumerate(self.cores):
            stats.add(self.images[b], x[b, :, r0:r1, c0:c1])
        raise Collected


_window: ContextVar[Window | None] = ContextVar("esr_window", default=None)


@contextmanager
def running(window: Window | None):
    """The network runs on the batch of windows described by `window` (None: on whole images)."""
    if window is not None:
        window.calls = 0
    token = _window.set(window)
    try:
        yield
    finally:
        _window.reset(token)


def mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (population) standard deviation of each channel over the image: (B, C, 1, 1) each."""
    window = _window.get()
    if window is None:
        mean = x.mean(dim=(2, 3), keepdim=True)
        return mean, (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
    s1, s2, n = window.moments(x)
    mean = s1 / n
    return mean.to(x.dtype), (s2 / n - mean**2).clamp_min(0).sqrt().to(x.dtype)


def l2_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm of each channel over the image: (B, C, 1, 1)."""
    window = _window.get()
    if window is None:
        return torch.norm(x, p=2, dim=(2, 3), keepdim=True)
    return window.moments(x)[1].sqrt().to(x.dtype)


def upsample(pooled: torch.Tensor, size: tuple[int, int], stride: int) -> torch.Tensor:
    """`F.interpolate(pooled, size, mode="bilinear", align_corners=False)` for a map pooled with a total `stride`
    from an input of `size`, sampled where the whole image samples it."""
    window = _window.get()
    if window is None:
        return F.interpolate(pooled, size, mode="bilinear", align_corners=False)

    def resample(part: torch.Tensor, origin: tuple[int, int]) -> torch.Tensor:
        part = part.float()
        for axis in (2, 3):
            first, second, weight = _taps(pooled.shape[axis], size[axis - 2], window.statistics.size[axis - 2],
                                          origin[axis - 2], stride)
            weight = weight.to(part.device).view([-1 if d == axis else 1 for d in range(4)])
            part = _pick(part, axis, first) * (1 - weight) + _pick(part, axis, second) * weight
        return part.to(pooled.dtype)

    return _per_window(pooled, window, resample)


def adaptive_max_pool(x: torch.Tensor, factor: int) -> torch.Tensor:
    """`F.adaptive_max_pool2d(x, (h // factor, w // factor))` (at least 1 cell) over the image's cells: a window gets
    the cells of the whole image that it overlaps (a fixed number, the last repeated), which are uneven when a side
    is not a multiple of `factor`."""
    window = _window.get()
    if window is None:
        h, w = x.shape[-2:]
        return F.adaptive_max_pool2d(x, (max(h // factor, 1), max(w // factor, 1)))

    def pool(part: torch.Tensor, origin: tuple[int, int]) -> torch.Tensor:
        for axis in (2, 3):
            _, rows = _cells(origin[axis - 2], x.shape[axis], window.statistics.size[axis - 2], factor)
            part = _pick(part, axis, rows.flatten()).unflatten(axis, tuple(rows.shape)).amax(axis + 1)
        return part

    return _per_window(x, window, pool)


def upsample_nearest(pooled: torch.Tensor, size: tuple[int, int], factor: int) -> torch.Tensor:
    """`F.interpolate(pooled, size, mode="nearest")` for the cells of `adaptive_max_pool(x, factor)`, x of `size`."""
    window = _window.get()
    if window is None:
        return F.interpolate(pooled, size, mode="nearest")

    def spread(part: torch.Tensor, origin: tuple[int, int]) -> torch.Tensor:
        for axis in (2, 3):
            index = _nearest(pooled.shape[axis], size[axis - 2], window.statistics.size[axis - 2], origin[axis - 2],
                             factor)
            part = _pick(part, axis, index)
        return part

    return _per_window(pooled, window, spread)


def _per_window(t: torch.Tensor, window: Window, op: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]):
    """op(element, its origin) for each element (1, C, h, w) of a batch of windows, concatenated."""
    if t.shape[0] != len(window.origins):
        raise ValueError(f"a batch of {t.shape[0]} maps for {len(window.origins)} windows")
    return torch.cat([op(part, origin) for part, origin in zip(t.split(1), window.origins)])


def _pick(t: torch.Tensor, axis: int, index: torch.Tensor) -> torch.Tensor:
    return t.index_select(axis, index.to(t.device))


# The index helpers below depend on integers only: cached, since every window of a run and every layer asks again.

@functools.lru_cache(maxsize=1024)
def _taps(pooled: int, length: int, image: int, origin: int, stride: int):
    """For each of the window's `length` pixels along one axis: the two pooled cells (in the window's pooled map)
    that bilinear resizing of the whole image's pooled map reads, and the weight of the second."""
    if origin % stride or (image - length) % stride:
        raise ValueError(f"a window at {origin} of length {length} in an image of {image} is off the stride-{stride} "
                         f"pooling grid: the architecture must declare tile_grid={stride}")
    whole = pooled + (image - length) // stride  # strided layers shed one cell per `stride` pixels
    scale = torch.tensor(whole, dtype=torch.float32) / image  # as PyTorch computes it: in float32
    src = ((torch.arange(origin, origin + length, dtype=torch.float32) + 0.5) * scale - 0.5).clamp_min(0)
    first = src.floor()
    weight = src - first
    first = first.long()
    second = (first + 1).clamp_max(whole - 1)
    shift = origin // stride
    return (first - shift).clamp(0, pooled - 1), (second - shift).clamp(0, pooled - 1), weight


@functools.lru_cache(maxsize=1024)
def _cells(origin: int, length: int, image: int, factor: int) -> tuple[int, torch.Tensor]:
    """Adaptive pooling's cells of an image side that a window [origin, origin + length) overlaps: the first one's
    index, and the window pixels of each (cells, longest cell), a cell's last pixel repeated to fill its row. Always
    as many cells as the most a window of this length can overlap; the missing ones repeat the last."""
    cells = max(image // factor, 1)
    i = torch.arange(cells)
    start, end = i * image // cells, -(-(i + 1) * image // cells)  # PyTorch's floor and ceil of i * image / cells
    overlapped = ((end > origin) & (start < origin + length)).nonzero().flatten()
    count = min(cells, length // (image // cells) + 2)  # the most a window this long can overlap
    chosen = overlapped[:count].tolist()
    chosen = torch.tensor(chosen + chosen[-1:] * (count - len(chosen)))
    start, end = (start[chosen] - origin).clamp(0, length - 1), (end[chosen] - origin).clamp(1, length)
    pixels = (start[:, None] + torch.arange(int((end - start).max()))).minimum(end[:, None] - 1)
    return int(chosen[0]), pixels


@functools.lru_cache(maxsize=1024)
def _nearest(pooled: int, length: int, image: int, origin: int, factor: int) -> torch.Tensor:
    """For each of the window's `length` pixels along one axis: the cell of `_cells` that nearest resizing of the
    whole image's cells reads, as an index into the window's cells."""
    first, _ = _cells(origin, length, image, factor)
    cells = max(image // factor, 1)
    scale = torch.tensor(cells, dtype=torch.float32) / image  # as PyTorch computes it: in float32
    src = (torch.arange(origin, origin + length) * scale).floor().long()
    return (src.clamp_max(cells - 1) - first).clamp(0, pooled - 1)
