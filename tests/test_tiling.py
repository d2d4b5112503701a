"""Whole-image operations under tiling (esr_cli.tiling): a tiled run gives the whole image's statistics and samples
pooled maps on the whole image's grid."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from esr_cli import Architecture, tiling
from esr_cli.engine import Upscaler
from esr_cli.loaded import LoadedModel


@dataclass
class GlobalConfig:
    scale: int = 2


class GlobalNet(nn.Module):
    """Every whole-image op of the tiling module: a contrast gate (mean + std), a stride-6 pooled spatial gate
    stretched back to the input size, and a GRN-like norm; otherwise 3x3 convs."""

    def __init__(self, scale: int = 2):
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.squeeze = nn.Conv2d(8, 8, 3, stride=2)
        self.gate = nn.Conv2d(8, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 3 * scale**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.relu(self.head(x))
        mean, std = tiling.mean_std(f)
        f = f * torch.sigmoid(mean + std)
        pooled = self.gate(F.max_pool2d(self.squeeze(f), 7, stride=3))
        f = f * torch.sigmoid(tiling.upsample(pooled, f.shape[-2:], stride=6))
        f = f / (tiling.l2_norm(f) + 1e-6) * 10
        return self.shuffle(self.tail(f)) + F.interpolate(x, scale_factor=2, mode="nearest")


ARCH = Architecture(name="global", model=GlobalNet, config=GlobalConfig, detect=("head.weight",),
                    read_config=lambda sd, s: GlobalConfig(), min_size=15, tile_grid=6, tile_overlap=24)


def engine(**kwargs) -> Upscaler:
    return Upscaler(LoadedModel(GlobalNet(), ARCH, GlobalConfig()), **kwargs)


def test_whole_image_ops_are_the_plain_formulas_outside_a_tiled_run():
    x, pooled = torch.randn(2, 4, 30, 41), torch.randn(2, 4, 4, 6)
    mean, std = tiling.mean_std(x)
    assert torch.equal(mean, x.mean(dim=(2, 3), keepdim=True))
    assert torch.allclose(std, x.std(dim=(2, 3), keepdim=True, correction=0))
    assert torch.allclose(tiling.l2_norm(x), x.pow(2).sum(dim=(2, 3), keepdim=True).sqrt())
    assert torch.equal(tiling.upsample(pooled, (30, 41), 6),
                       F.interpolate(pooled, (30, 41), mode="bilinear", align_corners=False))


@pytest.mark.parametrize("size,origin", [((97, 146), (36, 60)), ((480, 320), (300, 6)), ((64, 64), (0, 0))])
def test_upsample_in_a_window_samples_where_the_whole_image_does(size, origin):
    """A window on the stride grid, ending on the image's edge: its pooled map is a crop of the image's, and the
    pixels whose taps lie in that crop equal the whole image's resize."""
    h, w = size
    pooled_size = lambda n: ((n - 3) // 2 + 1 - 7) // 3 + 1  # noqa: E731 (conv s2, max-pool 7/3)
    whole = torch.randn(1, 5, pooled_size(h), pooled_size(w))
    reference = F.interpolate(whole, size, mode="bilinear", align_corners=False)
    oy, ox = origin
    crop = whole[:, :, oy // 6:, ox // 6:]
    window = tiling.Window(tiling.Statistics(size, 1), [origin], [(0, 1, 0, 1)], [0])
    with tiling.running(window):
        got = tiling.upsample(crop, (h - oy, w - ox), 6)
    # the first rows and columns read cells above and left of the crop: the whole image's cells drift from
    # the stride grid by up to 2.5 cells (its pooled size is not exactly size / 6)
    iy, ix = (_first_inside(n, whole.shape[k], o) for n, k, o in ((h, 2, oy), (w, 3, ox)))
    assert max(iy, ix) <= 18
    assert torch.allclose(got[..., iy:, ix:], reference[..., oy + iy:, ox + ix:], atol=1e-4)


def _first_inside(length: int, pooled: int, origin: int) -> int:
    src = ((torch.arange(origin, length) + 0.5) * pooled / length - 0.5).clamp_min(0)
    return int((src < origin // 6).sum())


@pytest.mark.parametrize("factor", [4, 8, 16])
def test_adaptive_pooling_in_a_window_uses_the_image_cells(factor):
    """104 = 6.5 x 16: the whole image's 1/16 cells are uneven, so a window must pool the image's cells, not its own."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 104, 152)
    reference = tiling.upsample_nearest(tiling.adaptive_max_pool(x, factor), (104, 152), factor)
    origins, size = [(40, 56), (0, 88)], (64, 64)
    crops = torch.cat([x[:, :, oy:oy + size[0], ox:ox + size[1]] for oy, ox in origins])
    window = tiling.Window(tiling.Statistics((104, 152), 2), [o for o in origins for _ in range(2)],
                           [(0, 1, 0, 1)] * 4, [0, 1, 0, 1])
    with tiling.running(window):
        pooled = tiling.adaptive_max_pool(crops, factor)
        got = tiling.upsample_nearest(pooled, size, factor)
    for k, (oy, ox) in enumerate(origins):
        inner = slice(18, -18)  # cells cut by the window's edge are the margin's business
        want = reference[:, :, oy:oy + size[0], ox:ox + size[1]][:, :, inner, inner]
        assert torch.equal(got[2 * k:2 * k + 2, :, inner, inner], want)


def test_a_window_off_the_pooling_grid_is_refused():
    window = tiling.Window(tiling.Statistics((100, 100), 1), [(5, 0)], [(0, 1, 0, 1)], [0])
    with tiling.running(window), pytest.raises(ValueError, match="tile_grid=6"):
        tiling.upsample(torch.zeros(1, 1, 10, 10), (95, 100), 6)


@pytest.mark.parametrize("length,tile,margin,grid,least", [(97, 32, 8, 6, 15), (146, 64, 16, 6, 15),
                                                           (200, 50, 10, 8, 1), (17, 8, 2, 6, 15)])
def test_windows_sit_on_the_grid_and_the_last_ends_on_the_edge(length, tile, margin, grid, least):
    spans = list(tiling.spans(length, tile, margin, grid, least))
    assert [c0 for c0, *_ in spans][0] == 0 and spans[-1][1] == length and spans[-1][3] == length
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # cores partition the length
    sizes = {e1 - e0 for *_, e0, e1 in spans}
    assert len(sizes) == 1 and sizes.pop() >= min(least, length)
    for c0, c1, e0, e1 in spans:
        assert e0 % grid == 0 and (length - (e1 - e0)) % grid == 0
        assert e0 <= max(c0 - margin, 0) and e1 >= min(c1 + margin, length)


@pytest.mark.parametrize("tile,batch", [(24, 1), (32, 3), (40, 4)])
def test_a_tiled_run_of_a_whole_image_network_equals_the_whole_run(tile, batch):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 77, 95)  # two images: statistics are per image
    x[1] *= 0.3
    whole = engine().upscale(x)
    up = engine(tile=tile, batch_size=batch)
    tiled = up.upscale(x)
    assert up.statistics == 2  # mean_std and l2_norm: one gathering pass each (upsample needs none)
    assert (tiled - whole).abs().max() < 1e-4


def test_without_the_window_context_tiles_differ():
    """The control: the same network tiled with plain per-tile formulas is visibly off."""
    x = torch.rand(1, 3, 77, 95)
    whole = engine().upscale(x)
    up = engine(tile=32)
    with torch.no_grad():
        up.model.module.forward = _plain(up.model.module)
        tiled = up.upscale(x)
    assert (tiled - whole).abs().max() > 1e-2


def _plain(net: GlobalNet):
    def forward(x):
        with tiling.running(None):
            return GlobalNet.forward(net, x)
    return forward


def test_gathering_survives_an_out_of_memory_split():
    x = torch.rand(1, 3, 77, 95)
    whole = engine().upscale(x)
    up = engine(tile=24, batch_size=4)
    run, seen = up.model.forward, []

    def picky(batch, window=None):
        seen.append(batch.shape[0])
        if batch.shape[0] > 1:
            raise torch.OutOfMemoryError("too big")
        return run(batch, window)

    up.model.forward = picky
    assert (up.upscale(x) - whole).abs().max() < 1e-4
    assert max(seen) > 1
