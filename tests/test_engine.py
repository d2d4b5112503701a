"""The engine: seamless tiling, padding to the size multiple, precision fallback, OOM splitting, self-ensemble."""

from __future__ import annotations

import dataclasses

import numpy as np
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
        return torch.full_like(y, float("nan")) if x.dtype != torch.float32 else y


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
    model.for_inference().forward(torch.rand(1, 3, 8, 8))  # an fp32 "CUDA" model run
    assert seen == [(False, False)]
    assert (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32) == (True, True)


# ---- low precision, levels out, the host copy ---------------------------------------------------

@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_low_precision_converts_the_weights_and_keeps_an_fp32_copy(precision):
    torch.manual_seed(0)
    seen = []
    net = TinyNet()
    net.register_forward_pre_hook(lambda m, a: seen.append(a[0].dtype))
    fp32 = make().upscale(x := torch.rand(1, 3, 20, 20))
    up = Upscaler(LoadedModel(net, tiny, TinyConfig(), precision=precision))
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    assert {p.dtype for p in up.model.module.parameters()} == {dtype}
    assert {p.dtype for p in up.model.reference.parameters()} == {torch.float32}
    out = up.upscale(x)
    assert seen == [dtype] and out.dtype == torch.float32 and up.model.fallbacks == 0
    assert 0 < (out - fp32).abs().max() < 0.02  # rounded as the dtype rounds, no more
    up.model.for_inference()  # a second call converts nothing again
    assert {p.dtype for p in up.model.reference.parameters()} == {torch.float32}


@pytest.mark.parametrize("tile,bits", [(0, 8), (16, 8), (0, 16), (16, 16)])
def test_levels_are_the_quantized_float_output(tile, bits):
    from esr_cli.images import quantize

    up = make(tile=tile, tile_overlap=4)
    x = torch.rand(2, 3, 37, 29)
    assert np.array_equal(up.upscale_levels(x, bits), quantize(up.upscale(x), bits))


@pytest.mark.parametrize("dtype,peak", [(torch.uint8, 255), (torch.uint16, 65535)])
def test_integer_input_is_read_as_levels(dtype, peak):
    levels = torch.randint(0, peak + 1, (1, 3, 24, 31)).to(dtype)
    up = make(tile=16, tile_overlap=4)
    as_float = torch.from_numpy(levels.numpy().astype(np.float32) / peak)  # images.to_batch's conversion
    assert np.array_equal(up.upscale_levels(levels, 8), up.upscale_levels(as_float, 8))


def test_rows_reach_the_sink_one_strip_late_and_all_of_them():
    from esr_cli.engine import Outbound

    got = []
    out = Outbound(lambda y0, y1, rows: got.append((y0, y1, rows.copy())), 8, torch.device("cpu"))
    out(0, 2, torch.full((1, 3, 2, 4), 0.5))
    assert got == []  # held while the next strip is worked on (on a GPU: while it is copied)
    out(2, 3, torch.ones(1, 3, 1, 4))
    assert [g[:2] for g in got] == [(0, 2)] and got[0][2].shape == (1, 2, 4, 3) and (got[0][2] == 128).all()
    out.close()
    assert [g[:2] for g in got] == [(0, 2), (2, 3)] and (got[1][2] == 255).all()


def test_cudnn_benchmark_only_while_tiles_of_one_shape_run(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    seen = []

    class Recorder(TinyNet):
        def forward(self, x):
            seen.append(torch.backends.cudnn.benchmark)
            return super().forward(x)

    up = Upscaler(LoadedModel(Recorder(), tiny, TinyConfig()), tile=16, tile_overlap=4)
    x = torch.rand(1, 3, 40, 40)
    up.upscale(x)
    assert seen and all(seen) and torch.backends.cudnn.benchmark is False
    seen.clear()
    up.tile = 0
    up.upscale(x)  # whole images come in every size: no timing of each new shape
    assert seen == [False]


@pytest.mark.slow
def test_compiled_network_gives_the_eager_output():
    """`--compile` (torch.compile, static shapes): the same tiles, the same pixels up to float rounding."""
    up, x = make(tile=16, tile_overlap=4), torch.rand(1, 3, 40, 40)
    eager = up.upscale(x)
    up.compile()
    assert torch.allclose(up.upscale(x), eager, atol=1e-5)


def test_pinned_buffers_take_turns_without_overwriting_a_strip_not_yet_handed_over(monkeypatch):
    """The CUDA branch with its two CUDA calls stubbed: pinned allocation (a plain one here) and the copy event."""
    from esr_cli import engine

    class Event:
        def record(self):
            pass

        def synchronize(self):
            pass

    plain_empty = torch.empty
    allocations = []

    def empty(*size, pin_memory=False, **kw):
        allocations.append(pin_memory)
        return plain_empty(*size, **kw)

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch, "empty", empty)
    got = []
    out = engine.Outbound(lambda y0, y1, rows: got.append((y0, rows.copy())), 8, torch.device("cuda"))
    strips = [torch.full((1, 3, rows, 5), value / 255) for rows, value in [(4, 10), (4, 20), (2, 30), (6, 40)]]
    y = 0
    for strip in strips:
        out(y, y + strip.shape[2], strip.clone())
        y += strip.shape[2]
    out.close()
    assert [(y0, r.shape[1], int(r.max()), int(r.min())) for y0, r in got] == \
        [(0, 4, 10, 10), (4, 4, 20, 20), (8, 2, 30, 30), (10, 6, 40, 40)]
    assert allocations == [True, True, True]  # two buffers, one of them grown for the larger last strip
