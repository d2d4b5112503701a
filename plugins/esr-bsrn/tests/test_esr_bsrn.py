"""esr-bsrn: contract, config read-back, tiled == untiled through ESA, and the authors' NTIRE 2022 file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from esr_cli import Registry, check_architecture, default_registry, read_state_dict, tiling
from esr_cli.benchmarking import complexity
from esr_bsrn import BSRNSConfig, bsrn_s
from esr_bsrn.bsrn import ESA

SHARED = Path(__file__).resolve().parents[3].parent / "shared"  # <repo>/../shared
FILE = SHARED / "zoo" / "weights" / "bsrn_ntire22_x4.pth"
needs_zoo = pytest.mark.skipif(not FILE.is_file(), reason=f"the authors' weights are not at {FILE} (shared absent)")
SMALL = BSRNSConfig(channels=16, blocks=2, scale=2)


def everything() -> Registry:
    """Every installed architecture plus ours (installed or not), so detection is checked against all of them."""
    return Registry.of(*[a for a in default_registry().architectures.values() if a.name != bsrn_s.name], bsrn_s)


@pytest.mark.slow  # 5-8 s on 2 shared cores: builds and forwards at x2, x3, x4
def test_contract():
    check_architecture(bsrn_s, everything())


def test_contract_small():
    check_architecture(bsrn_s, everything(), config=SMALL)


@pytest.mark.parametrize("config", [BSRNSConfig(), BSRNSConfig(channels=64, blocks=8, scale=3), SMALL], ids=str)
def test_config_read_back(config):
    match = everything().detect(bsrn_s.build(config).state_dict())
    assert (match.architecture.name, match.config) == ("bsrn-s", config)


def test_pointwise_layers_are_linear_and_not_convs():
    """The NTIRE #conv (43) counts Conv2d layers: the 78 pointwise nn.Linear layers are not among them."""
    model = bsrn_s.build(BSRNSConfig())
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert (convs, linears) == (43, 78)
    assert model.state_dict()["fea_conv.pw.weight"].shape == (48, 12)  # 4 x 3 input channels, 2-D


@pytest.mark.slow  # about 5 s: one forward at 256x256
def test_complexity_matches_the_challenge_table():
    figures = complexity(bsrn_s.build(BSRNSConfig()), 256)
    challenge = bsrn_s.weights[0].challenge
    assert figures["params"] == bsrn_s.weights[0].params == 156_288
    assert figures["convs"] == challenge.convs and figures["unhooked_convs"] == 0
    assert abs(figures["activations"] / 1e6 - challenge.activations_m) < 0.01  # 65.758 M
    assert abs(figures["macs"] / 1e9 / challenge.flops_g - 1) < 0.02  # 9.430 G vs 9.5


def test_esa_in_windows_samples_the_whole_image():
    """ESA resizes its stride-6 pooled map through esr_cli.tiling: two windows on the grid, away from their
    edges (where the pooled branch's convs see zero padding), give the whole image's mask; a plain resize does not."""
    torch.manual_seed(0)
    esa = ESA(16).eval()
    x, origins, side = torch.randn(1, 16, 150, 186), [(48, 60), (54, 90)], 96
    crops = torch.cat([x[..., oy:oy + side, ox:ox + side] for oy, ox in origins])
    window = tiling.Window(tiling.Statistics((150, 186), 1), origins, [(0, 1, 0, 1)] * 2, [0, 0])
    with torch.inference_mode():
        whole = esa(x)
        with tiling.running(window):
            tiled = esa(crops)
        plain = esa(crops)
    inner = slice(32, 64)
    for k, (oy, ox) in enumerate(origins):
        want = whole[0, :, oy:oy + side, ox:ox + side][:, inner, inner]
        assert torch.allclose(tiled[k][:, inner, inner], want, atol=1e-5)
        assert not torch.allclose(plain[k][:, inner, inner], want, atol=1e-4)


def test_smallest_input_runs():
    model = bsrn_s.build(SMALL).eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, bsrn_s.min_size, bsrn_s.min_size)).shape == (1, 3, 30, 30)


@needs_zoo
def test_authors_file_loads_strict_and_is_detected():
    sd = read_state_dict(FILE)  # {"params": ...} unwrapped by the core
    match = everything().detect(sd)
    assert (match.architecture.name, match.config) == ("bsrn-s", BSRNSConfig())
    bsrn_s.build(match.config).load_state_dict(match.state_dict, strict=True)
    with pytest.raises(Exception, match="no installed architecture"):
        Registry.of(*[a for a in default_registry().architectures.values() if a.name != bsrn_s.name]).detect(sd)


@needs_zoo
def test_weights_metadata_matches_the_file():
    w = bsrn_s.weights[0]
    assert hashlib.sha256(FILE.read_bytes()).hexdigest() == w.sha256
    assert sum(t.numel() for t in read_state_dict(FILE).values()) == w.params
