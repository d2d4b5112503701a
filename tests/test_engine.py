"""The engine: seamless tiling, padding to the size multiple, precision fallback, OOM splitting, self-ensemble."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny import TinyConfig, TinyNet, tiny

from esr_cli.engine import Upscaler
from esr_cli.loaded import LoadedModel
from esr_cli.loaded import resolve_precision
from esr_cli import tiling


def make(scale=2, **kw) -> Upscaler:
    torch.manual_seed(0)
    return Upscaler(LoadedModel(TinyNet(scale=scale), tiny, TinyConfig(scale=scale)), **kw)


@pytest.mark.parametrize("tile,overlap,batch", [(16, 4, 1), (20, 8, 3), (7, 4, 4), (64, 16, 2)])
def test_tiled_equals_untiled_for_a_local_network(tile, overlap, batch):
    up = make()
    x = torch.rand(2, 3, 70, 53)
    whole = up.upscale(x)
    up.tile, up.tile_overlap, up.batch_size = tile, overlap, batch
    assert torch.allclose(up.upscale(x), whole, atol=1e-6)


def test_tiles_without_overlap_show_seams_that_blending_removes():
    up = make()
    x = torch.rand(1, 3, 64, 64)
    whole = up.upscale(x)
    up.tile, up.tile_overlap = 16, 0
    assert (up.upscale(x) - whole).abs().max() > 1e-3  # the check can fail: hard edges differ


def test_spans_cover_the_image_with_equal_windows():
    for length, tile, margin in [(100, 30, 8), (17, 64, 8), (64, 16, 0), (5, 2, 3)]:
        spans = list(tiling.spans(length, tile, margin))
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert len({e1 - e0 for _, _, e0, e1 in spans}) == 1
        assert all(0 <= e0 <= c0 and c1 <= e1 <= length for c0, c1, e0, e1 in spans)


def test_pads_to_the_size_multiple_and_crops():
    arch = dataclasses.replace(tiny, size_multiple=8)
    seen = []
    net = TinyNet(scale=3)
    net.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[-2:])))
    up = Upscaler(LoadedModel(net, arch, TinyConfig(scale=3)))
    assert up.upscale(torch.rand(1, 3, 13, 21)).shape == (1, 3, 39, 63)
    assert seen == [(16, 24)]


class Overflowing(TinyNet):
    def forward(self, x):
        y = super().forward(x)
        return torch.full_like(y, float("nan")) if torch.is_autocast_enabled("cpu") else y


def test_non_finite_low_precision_output_is_recomputed_in_fp32():
    torch.manual_seed(0)
    up = Upscaler(LoadedModel(Overflowing(), tiny, TinyConfig(), precision="bf16"), tile=16, tile_overlap=4)
    ref = make().upscale(x := torch.rand(1, 3, 40, 40))
    out = up.upscale(x)
    assert torch.isfinite(out).all() and up.model.fallbacks > 0
    assert torch.allclose(out, ref, atol=1e-6)


def test_out_of_memory_splits_the_batch_and_keeps_every_tile():
    class Picky(TinyNet):
        def forward(self, x):
            if x.shape[0] > 1:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return super().forward(x)

    torch.manual_seed(0)
    up = Upscaler(LoadedModel(Picky(), tiny, TinyConfig()), tile=16, tile_overlap=4, batch_size=4)
    x = torch.rand(1, 3, 50, 50)
    assert torch.allclose(up.upscale(x), make().upscale(x), atol=1e-6)


def test_self_ensemble_averages_the_eight_transforms():
    up = make()
    x = torch.rand(1, 3, 12, 12)
    manual = sum(torch.rot90(up.upscale(torch.rot90(t, k, (-2, -1))), -k, (-2, -1)).flip(-1) if f else
                 torch.rot90(up.upscale(torch.rot90(x, k, (-2, -1))), -k, (-2, -1))
                 for k in range(4) for f, t in ((False, x), (True, x.flip(-1)))) / 8
    out = up.upscale(x, tta=True)
    assert torch.allclose(out, manual.clamp(0, 1), atol=1e-5)
    assert not torch.allclose(out, up.upscale(x), atol=1e-4)


def test_auto_precision_follows_the_plugin_declaration():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu, tiny) == "fp32"
    assert resolve_precision("auto", cpu, dataclasses.replace(tiny, precisions=())) == "fp32"
    assert resolve_precision("auto", torch.device("cuda"), dataclasses.replace(tiny, precisions=("bf16",))) in ("bf16", "fp32")


def test_auto_tile_is_bounded():
    up = make(tile="auto")
    t = up.auto_tile(torch.rand(1, 3, 8, 8))
    assert 64 <= t <= 256 and t % 32 == 0


def test_pads_up_to_the_minimum_size():
    arch = dataclasses.replace(tiny, min_size=15, size_multiple=4)
    seen = []
    net = TinyNet(scale=2)
    net.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[-2:])))
    assert Upscaler(LoadedModel(net, arch, TinyConfig())).upscale(torch.rand(1, 3, 5, 30)).shape == (1, 3, 10, 60)
    assert seen == [(16, 32)]



def test_fp32_on_cuda_turns_tf32_off_only_while_the_network_runs(monkeypatch):
    """The TF32 switches are CUDA flags; they can be read and set on a CPU build, so the scope is tested here."""
    from esr_cli.loaded import precision_scope

    backends = torch.backends
    monkeypatch.setattr(backends.cudnn, "allow_tf32", True)
    monkeypatch.setattr(backends.cuda.matmul, "allow_tf32", True)
    seen = []
    with precision_scope(torch.device("cuda"), "fp32"):
        seen.append((backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32))
    assert seen == [(False, False)]
    assert (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32) == (True, True)
    with pytest.raises(RuntimeError), precision_scope(torch.device("cuda"), "fp32"):
        raise RuntimeError("a failed forward restores them too")
    assert (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32) == (True, True)

    class Recorder(TinyNet):
        def forward(self, x):
            seen.append((backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32))
            return super().forward(x)

    seen.clear()
    model = LoadedModel(Recorder(), tiny, TinyConfig())
    model.device = torch.device("cuda")  # the flags are what is tested: the tensors stay on the CPU
    monkeypatch.setattr(model, "network_input", lambda x01: x01)
    Upscaler(model).upscale(torch.rand(1, 3, 8, 8))  # an fp32 "CUDA" model built and run
    assert seen == [(False, False)]
    assert (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32) == (True, True)
