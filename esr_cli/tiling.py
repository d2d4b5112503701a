"""Tiling that stays exact: the whole-image operations plugins write with, and the tiled run that drives them.

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
import math
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


# ---- the tiled run: windows, whole-image statistics first, feather blending --------------------------

Sink = Callable[[int, int, torch.Tensor], None]
"""Receives finished output rows: sink(y0, y1, rows) with rows (N, 3, y1 - y0, W * scale) float in [0, 1], on the
run's device, the sink's to keep or overwrite."""
Forward = Callable[[torch.Tensor, "Window | None"], torch.Tensor]
"""Runs the network on a batch of windows (never splitting a window), output on any device."""


@dataclass
class TiledRun:
    """How one network is tiled: windows of `tile` core pixels with `overlap` context, on the `grid` of its pooled
    maps and size multiple, at least `least` pixels, `batch_size` windows per forward."""

    forward: Forward
    scale: int
    tile: int
    overlap: int
    grid: int = 1
    least: int = 1
    batch_size: int = 4
    statistics: int | None = None
    """How many whole-image statistics the network asks for, once a run has found out."""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where windows are blended: x's device (the network's when it fits, so that only finished rows move)."""

    def __call__(self, x: torch.Tensor, sink: Sink, progress: Callable[[int], None] | None = None) -> None:
        """Windows row by row over an already padded x; finished rows go to the sink, so only one strip of output is
        held. The blending weights are separable (row ramps times column ramps), so their sum is kept as two
        vectors. Whole-image statistics are gathered first."""
        s, m = self.scale, self.overlap
        n, c, h, w = x.shape
        rows, cols = list(spans(h, self.tile, m, self.grid, self.least)), list(spans(w, self.tile, m, self.grid, self.least))
        statistics = Statistics((h, w), n)
        self._gather(x, rows, cols, statistics)
        at = self.device
        wx = [ramp(d0, d1, f0, f1, w, m, s).to(at) for d0, d1, f0, f1 in cols]
        col_sum = torch.zeros(w * s, device=at)
        for (_, _, f0, f1), weights in zip(cols, wx):
            col_sum[f0 * s:f1 * s] += weights
        top = 0  # first output row not yet handed to the sink; acc holds rows [top, ...)
        acc, row_sum = torch.zeros(n, c, 0, w * s, device=at), torch.zeros(0, device=at)
        for c0, c1, e0, e1 in rows:
            grow = e1 * s - top - acc.shape[2]
            acc = torch.cat([acc, acc.new_zeros(n, c, grow, w * s)], 2)
            skip = top - e0 * s  # window rows already final: their weight here is zero
            wy = ramp(c0, c1, e0, e1, h, m, s)[skip:].to(at)
            row_sum = torch.cat([row_sum, row_sum.new_zeros(grow)])
            row_sum[:len(wy)] += wy
            for group, batch, window in self._batches(x, (c0, c1, e0, e1), cols, statistics):
                ys = self.forward(batch, window)
                for k, j in enumerate(group):
                    f0, f1 = cols[j][2] * s, cols[j][3] * s
                    acc[:, :, :, f0:f1] += ys[k * n:(k + 1) * n, :, skip:].to(at) * (wy[:, None] * wx[j])
                del ys
                if progress:
                    progress(len(group))
            done = h * s if c1 == h else int((c1 - m / 2) * s)
            k = done - top
            sink(top, done, acc[:, :, :k].div_(row_sum[:k, None]).div_(col_sum))
            acc, row_sum, top = acc[:, :, k:].clone(), row_sum[k:].clone(), done  # clone: frees the strip

    def _batches(self, x: torch.Tensor, row: tuple[int, int, int, int], cols: list, statistics: Statistics):
        """The windows of one row of tiles, `batch_size` at a time: (column indices, batch, where they lie)."""
        n, (c0, c1, e0, e1) = x.shape[0], row
        for i in range(0, len(cols), self.batch_size):
            group = range(i, min(i + self.batch_size, len(cols)))
            batch = torch.cat([x[:, :, e0:e1, cols[j][2]:cols[j][3]] for j in group])
            window = Window(statistics, [(e0, cols[j][2]) for j in group for _ in range(n)],
                            [(c0 - e0, c1 - e0, cols[j][0] - cols[j][2], cols[j][1] - cols[j][2])
                             for j in group for _ in range(n)],
                            [image for _ in group for image in range(n)])
            yield group, batch, window

    def _gather(self, x: torch.Tensor, rows: list, cols: list, statistics: Statistics) -> None:
        """One pass over the windows per whole-image statistic the network asks for; each pass stops the network
        at that statistic. A pass whose first forward runs through means there are no more (remembered)."""
        statistics.gathering = True
        while self.statistics is None or len(statistics.known) < self.statistics:
            if not self._gathering_pass(x, rows, cols, statistics):
                self.statistics = len(statistics.known)
                break
            statistics.close()
        statistics.gathering = False

    def _gathering_pass(self, x: torch.Tensor, rows: list, cols: list, statistics: Statistics) -> bool:
        """Sums the next statistic over every window; False if the network asks for none (a forward ran through)."""
        for row in rows:
            for _, batch, window in self._batches(x, row, cols, statistics):
                try:
                    self.forward(batch, window)
                    return False
                except Collected:
                    pass
        return True


def spans(length: int, tile: int, margin: int, grid: int = 1, least: int = 1):
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


def ramp(c0: int, c1: int, e0: int, e1: int, length: int, margin: int, scale: int) -> torch.Tensor:
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
