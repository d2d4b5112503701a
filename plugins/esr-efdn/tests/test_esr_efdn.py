"""esr-efdn: contract, config read-back, distinct detection, the authors' files, and the attentions' pooled maps
sampled on the whole image's grid inside a tiled window."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from esr_cli import Registry, check_architecture, default_registry, read_state_dict, tiling
from esr_efdn import EFDNConfig, PFDNLiteConfig, efdn, pfdnlite
from esr_efdn.efdn import ESA
from esr_efdn.pfdnlite import LocalAttention

WEIGHTS = Path(__file__).resolve().parents[3].parent / "shared" / "zoo" / "weights"
needs_zoo = pytest.mark.skipif(not WEIGHTS.is_dir(), reason=f"shared weights not found at {WEIGHTS}")
ARCHS = (efdn, pfdnlite)
FILES = {  # zoo entry -> (local file, upstream file name, config read from its shapes)
    "efdn-x4": ("efdn_ntire22_x4.pth", "team01_efdn.pth", EFDNConfig()),
    "pfdnlite-x4": ("pfdnlite_ntire24_x4.pth", "team01_pfdnlite.pth", PFDNLiteConfig()),
}


def everything() -> Registry:
    """Every installed architecture plus ours (installed or not), so detection is checked against all of them."""
    return Registry.of(*[a for a in default_registry().architectures.values() if a.name not in ("efdn", "pfdnlite")],
                       *ARCHS)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_contract(arch):
    check_architecture(arch, everything())


@pytest.mark.parametrize("arch,config", [
    (efdn, EFDNConfig(scale=2)), (efdn, EFDNConfig(channels=32, scale=3)),
    (pfdnlite, PFDNLiteConfig(scale=2)), (pfdnlite, PFDNLiteConfig(channels=32, pruned=(True, False, True), scale=3)),
], ids=["efdn-x2", "efdn-32ch-x3", "pfdnlite-x2", "pfdnlite-3-blocks-x3"])
def test_config_read_back(arch, config):
    match = everything().detect(arch.build(config).state_dict())
    assert (match.architecture, match.config) == (arch, config)


def test_detect_keys_are_distinct():
    for arch, other in (ARCHS, ARCHS[::-1]):
        assert not set(other.detect) <= set(arch.build(arch.config()).state_dict())


def test_pfdnlite_global_skip_is_nearest_upsampling():
    """With the tail zeroed, the output is the input repeated scale x scale: repeat_interleave then pixel shuffle."""
    model = pfdnlite.build(PFDNLiteConfig(channels=16, pruned=(True,), scale=3)).eval()
    torch.nn.init.zeros_(model.tail[0].weight)
    torch.nn.init.zeros_(model.tail[0].bias)
    x = torch.rand(2, 3, 9, 11)
    with torch.inference_mode():
        assert torch.equal(model(x), F.interpolate(x, scale_factor=3, mode="nearest"))


def test_efdn_output_is_clamped_by_the_network():
    model = efdn.build(EFDNConfig(channels=16, scale=2)).eval()
    torch.nn.init.constant_(model.tail[0].bias, 5.0)
    with torch.inference_mode():
        assert torch.equal(model(torch.rand(1, 3, 15, 17)), torch.ones(1, 3, 30, 34))


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_smallest_input_runs(arch):
    model = arch.build(arch.config(scale=2)).eval()
    side = arch.min_size
    with torch.inference_mode():
        assert model(torch.rand(1, 3, side, side)).shape == (1, 3, 2 * side, 2 * side)


@pytest.mark.parametrize("attention", [ESA, LocalAttention], ids=["efdn-esa", "pfdnlite-local-attention"])
def test_attention_in_a_window_samples_the_whole_images_pooled_map(attention):
    """A window on the tile grid that ends on the image's edge: away from its top-left edge (the overlap's business)
    the attention equals the whole image's; with per-window resizing it does not."""
    torch.manual_seed(0)
    module = attention(16).eval()
    x = torch.randn(1, 16, 97, 146)
    (oy, ox), margin = (36, 60), 30
    assert oy % efdn.tile_grid == ox % efdn.tile_grid == 0 and efdn.tile_grid == pfdnlite.tile_grid
    window = tiling.Window(tiling.Statistics(tuple(x.shape[-2:]), 1), [(oy, ox)], [(0, 1, 0, 1)], [0])
    with torch.inference_mode():
        whole = module(x)[..., oy + margin:, ox + margin:]
        with tiling.running(window):
            tiled = module(x[..., oy:, ox:])[..., margin:, margin:]
        plain = module(x[..., oy:, ox:])[..., margin:, margin:]
    assert (tiled - whole).abs().max() < 1e-5
    assert (plain - whole).abs().max() > 1e-3


@needs_zoo
@pytest.mark.parametrize("name", sorted(FILES))
def test_authors_file_is_detected_and_loads_strictly(name):
    file, _, config = FILES[name]
    sd = read_state_dict(WEIGHTS / file)
    match = everything().detect(sd)
    assert match.config == config
    assert name in {w.name for w in match.architecture.weights}
    match.architecture.build(match.config).load_state_dict(match.state_dict, strict=True)


@needs_zoo
def test_weights_metadata_matches_files():
    declared = {w.name: w for arch in ARCHS for w in arch.weights}
    assert set(declared) == set(FILES)
    for name, (file, upstream, _) in FILES.items():
        w, path = declared[name], WEIGHTS / file
        assert w.url.endswith("/" + upstream)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == w.sha256
        assert sum(t.numel() for t in read_state_dict(path).values()) == w.params
