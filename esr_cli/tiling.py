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
    _sums: list[torch.Tensor] | None = None

    def close(self) -> None:
        """Ends a gathering pass: the statistic summed over every window becomes known."""
        self.known.append((self._sums[0], self._sums[1]))
        self._sums = None


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
        if stats._sums is None:
            stats._sums = [torch.zeros(stats.images, x.shape[1], dtype=torch.float64) for _ in range(2)]
        for b, (r0, r1, c0, c1) in enumerate(self.cores):
            owned = x[b, :, r0:r1, c0:c1].double()
            stats._sums[0][self.images[b]] += owned.sum(dim=(1, 2)).cpu()
            stats._sums[1][self.images[b]] += owned.pow(2).sum(dim=(1, 2)).cpu()
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
    image, n = window.statistics.size, len(window.origins)
    per = pooled.shape[0] // n  # batch elements per window (1 unless the caller repeated them)
    parts = []
    for k, origin in enumerate(window.origins):
        part = pooled[k * per:(k + 1) * per].float()
        for axis in (2, 3):
            i0, i1, weight = _taps(pooled.shape[axis], size[axis - 2], image[axis - 2], origin[axis - 2], stride)
            shape = [1, 1, 1, 1]
            shape[axis] = -1
            weight = weight.to(part.device).view(shape)
            part = part.index_select(axis, i0.to(part.device)) * (1 - weight) + \
                part.index_select(axis, i1.to(part.device)) * weight
        parts.append(part.to(pooled.dtype))
    return torch.cat(parts)


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


def adaptive_max_pool(x: torch.Tensor, factor: int) -> torch.Tensor:
    """`F.adaptive_max_pool2d(x, (h // factor, w // factor))` (at least 1 cell) over the image's cells: a window gets
    the cells of the whole image that it overlaps (a fixed number, the last repeated), which are uneven when a side
    is not a multiple of `factor`."""
    window = _window.get()
    if window is None:
        h, w = x.shape[-2:]
        return F.adaptive_max_pool2d(x, (max(h // factor, 1), max(w // factor, 1)))
    per = x.shape[0] // len(window.origins)
    parts = []
    for k, origin in enumerate(window.origins):
        part = x[k * per:(k + 1) * per]
        for axis in (2, 3):
            _, start, end = _cells(origin[axis - 2], x.shape[axis], window.statistics.size[axis - 2], factor)
            span = int((end - start).max())
            rows = (start[:, None] + torch.arange(span)).minimum(end[:, None] - 1).to(x.device)  # (cells, span)
            part = part.index_select(axis, rows.flatten()).unflatten(axis, tuple(rows.shape)).amax(axis + 1)
        parts.append(part)
    return torch.cat(parts)


def upsample_nearest(pooled: torch.Tensor, size: tuple[int, int], factor: int) -> torch.Tensor:
    """`F.interpolate(pooled, size, mode="nearest")` for the cells of `adaptive_max_pool(x, factor)`, x of `size`."""
    window = _window.get()
    if window is None:
        return F.interpolate(pooled, size, mode="nearest")
    per = pooled.shape[0] // len(window.origins)
    parts = []
    for k, origin in enumerate(window.origins):
        part = pooled[k * per:(k + 1) * per]
        for axis in (2, 3):
            image = window.statistics.size[axis - 2]
            first, _, _ = _cells(origin[axis - 2], size[axis - 2], image, factor)
            cells = max(image // factor, 1)
            scale = torch.tensor(cells, dtype=torch.float32) / image  # as PyTorch computes it: in float32
            src = (torch.arange(origin[axis - 2], origin[axis - 2] + size[axis - 2]) * scale).floor().long()
            index = (src.clamp_max(cells - 1) - first).clamp(0, pooled.shape[axis] - 1)
            part = part.index_select(axis, index.to(part.device))
        parts.append(part)
    return torch.cat(parts)


def _cells(origin: int, length: int, image: int, factor: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Adaptive pooling's cells of an image side, those a window [origin, origin + length) overlaps: the first one's
    index, and each one's start and end in window coordinates (clipped to it). Always as many as the most a window
    of this length can overlap; the missing ones repeat the last."""
    cells = max(image // factor, 1)
    i = torch.arange(cells)
    start, end = i * image // cells, -(-(i + 1) * image // cells)  # PyTorch's floor and ceil of i * image / cells
    overlapped = ((end > origin) & (start < origin + length)).nonzero().flatten()
    count = min(cells, length // (image // cells) + 2)  # the most a window this long can overlap
    chosen = overlapped[:count].tolist()
    chosen += chosen[-1:] * (count - len(chosen))
    chosen = torch.tensor(chosen)
    return int(chosen[0]), (start[chosen] - origin).clamp(0, length - 1), (end[chosen] - origin).clamp(1, length)
