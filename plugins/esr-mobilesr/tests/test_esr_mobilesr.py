"""esr-mobilesr: contract, config read-back, the zero-padded window attention, the authors' file, and tiled runs that
match the whole image."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from esr_cli import Registry, check_architecture, default_registry, load_model, read_state_dict
from esr_cli.images import read_image, to_batch
from esr_mobilesr import MobileSRConfig, mobilesr
from esr_mobilesr.mobilesr import WINDOW, Transformer, unwindow, windows

SHARED = Path(__file__).resolve().parents[3].parent / "shared"  # <repo>/../shared
WEIGHTS = SHARED / "zoo" / "weights"
FILE = WEIGHTS / "mobilesr_ntire22_x4.pth"
needs_file = pytest.mark.skipif(not FILE.is_file(), reason=f"{FILE} is absent (needs the shared weights zoo)")
SMALL = MobileSRConfig(channels=16, ratios=(1, 2), heads=4, scale=2)


def everything() -> Registry:
    """Every installed architecture plus ours (installed or not)."""
    return Registry.of(*[a for a in default_registry().architectures.values() if a.name != "mobilesr"], mobilesr)


def test_contract():
    check_architecture(mobilesr, everything(), config=dataclasses.replace(SMALL, heads=8))


@pytest.mark.parametrize("config", [MobileSRConfig(), MobileSRConfig(scale=2), MobileSRConfig(scale=3),
                                    MobileSRConfig(channels=24, ratios=(2, 1, 3), scale=4)], ids=str)
def test_read_config_round_trip(config):
    assert mobilesr.read_config(mobilesr.build(config).state_dict(), None) == config


def test_upsampler_is_two_shuffles_by_2_at_x4_and_one_otherwise():
    for scale, keys in ((4, {"upsapling.0.weight", "upsapling.2.weight"}), (3, {"upsapling.0.weight"})):
        sd = mobilesr.build(MobileSRConfig(scale=scale)).state_dict()
        assert {k for k in sd if k.startswith("upsapling.") and k.endswith("weight")} == keys


def test_windows_are_the_8x8_blocks_in_raster_order():
    x = torch.arange(2 * 16 * 24 * 3.0).view(2, 16, 24, 3)
    w = windows(x)
    assert w.shape == (2 * 2 * 3, WINDOW * WINDOW, 3)
    assert torch.equal(w[4], x[0, 8:16, 8:16].reshape(64, 3))  # image 0, block row 1, block column 1
    assert torch.equal(unwindow(w, 2, 16, 24), x)


def test_attention_attends_to_the_padded_zeros_without_a_mask():
    """The textbook formula, window by window, on the normalised map zero-padded to whole windows."""
    torch.manual_seed(0)
    block = Transformer(16, heads=4, ratio=2).eval()
    x = torch.randn(1, 16, 13, 11)
    with torch.inference_mode():
        got = block(x)
        t = (x + block.pos_embed(x)).permute(0, 2, 3, 1)[0]
        padded = F.pad(block.norm1(t), (0, 0, 0, 5, 0, 3))  # 13 x 11 -> 16 x 16
        attended = torch.zeros_like(padded)
        for r in range(0, 16, 8):
            for c in range(0, 16, 8):
                tokens = padded[r:r + 8, c:c + 8].reshape(64, 16)
                q, k, v = block.attn.qkv(tokens).view(64, 3, 4, 4).permute(1, 2, 0, 3)  # (3, heads, 64, 4)
                a = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1) @ v
                attended[r:r + 8, c:c + 8] = block.attn.proj_out(a.transpose(0, 1).reshape(64, 16)).view(8, 8, 16)
        t = t + attended[:13, :11]
        want = (t + block.mlp(block.norm2(t))).permute(2, 0, 1)[None]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@needs_file
def test_authors_file_is_detected_and_loads_strictly():
    sd = read_state_dict(FILE)
    match = everything().detect(sd)
    assert match.architecture.name == "mobilesr" and match.config == MobileSRConfig()
    mobilesr.build(match.config).load_state_dict(match.state_dict, strict=True)
    w = mobilesr.weights[0]
    assert sum(t.numel() for t in sd.values()) == w.params
    assert hashlib.sha256(FILE.read_bytes()).hexdigest() == w.sha256


@needs_file
def test_complexity_of_the_challenge_entry():
    """Params, activations and #conv as published; FLOPs: the challenge's counter kept only the convolutions (its
    Linear hook reads the wrong dimensions of token inputs), which are within 2 % of the published 8.73 G."""
    from esr_cli.benchmarking import complexity

    with torch.device("meta"):
        module = mobilesr.build(MobileSRConfig())
    c, published = complexity(module, 256), mobilesr.weights[0].challenge
    assert abs(c["params"] / 1e6 - published.params_m) <= 0.0015
    assert c["activations"] / 1e6 == pytest.approx(published.activations_m, rel=0.02)
    assert c["convs"] == published.convs
    conv_macs = sum(m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1] * m.out_channels * (256 * r) ** 2
                    for m, r in conv_resolutions(module))
    assert conv_macs / 1e9 == pytest.approx(published.flops_g, rel=0.02)
    assert c["macs"] == conv_macs + 5 * 256 * 256 * (40 * 120 + 40 * 40 + 2 * 64 * 40) + 256 * 256 * 40 * 40 * 2 * 14


def conv_resolutions(module):
    """Each conv with its output resolution relative to the input: 1, except the upsampler's second conv (2) and
    the tail (4)."""
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            yield m, {"upsapling.2": 2, "tail": 4}.get(name, 1)


@pytest.mark.slow  # reads all 42 files of the zoo: 5-20 s
@needs_file
def test_no_other_zoo_file_is_claimed():
    ours = Registry.of(mobilesr)
    for path in sorted(WEIGHTS.iterdir()):
        if path == FILE:
            continue
        with pytest.raises(Exception, match="no installed architecture"):
            ours.detect(read_state_dict(path))


@pytest.mark.slow  # 3-10 s: a 70x70 image whole, then tiled twice
@needs_file
def test_tiles_on_the_window_grid_match_the_whole_image():
    """Set5 head (70 x 70 LR, 70 = 8 * 8 + 6), tiles of 64 with 8 pixels of context: windows of 62 at 0 and 8, so the
    first ends inside a block (zero-padded there) and the last ends on the image's edge, padded as the whole image is.
    Off the 8-grid (tile_grid=1) the windows' attention blocks are not the image's and the output moves by 14 levels."""
    x = to_batch(read_image(SHARED / "datasets" / "Set5" / "LR_bicubic" / "X4" / "headx4.png"))
    whole = load_model(FILE, device="cpu", precision="fp32", quiet=True).upscale(x)
    levels = {}
    for grid in (WINDOW, 1):
        registry = Registry.of(dataclasses.replace(mobilesr, tile_grid=grid))
        tiled = load_model(FILE, device="cpu", precision="fp32", tile=64, tile_overlap=8, registry=registry,
                           quiet=True).upscale(x)
        levels[grid] = ((tiled - whole).abs().max() * 255).item()
    assert levels[WINDOW] < 0.1 and levels[1] > 5, levels
