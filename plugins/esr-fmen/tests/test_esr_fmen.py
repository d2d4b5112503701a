"""esr-fmen: contract, config read-back, NJU-Jet/FMEN's key layout, complexity against the NTIRE 2022 table, and the
authors' file."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from esr_cli import Registry, check_architecture, default_registry, read_state_dict
from esr_cli.benchmarking import complexity
from esr_fmen import FMENConfig, fmen

SHARED = Path(__file__).resolve().parents[3].parent / "shared"  # <repo>/../shared
FILE = SHARED / "zoo" / "weights" / "fmen_ntire22_x4.pth"
needs_zoo = pytest.mark.skipif(not FILE.is_file(), reason=f"{FILE} is absent (needs the shared weights zoo)")
SMALL = FMENConfig(channels=16, mid_channels=8, warmup_mid_channels=4, warmup_erbs=1, stage_erbs=(2, 1, 3), scale=3)


def everything() -> Registry:
    """Every installed architecture plus ours, so detection is checked against all of them."""
    return Registry.of(*[a for a in default_registry().architectures.values() if a.name != "fmen"], fmen)


@pytest.mark.slow  # 3-7 s on 2 shared cores: full-width builds and forwards at x2, x3, x4
def test_contract():
    check_architecture(fmen, everything())


@pytest.mark.parametrize("config", [FMENConfig(), FMENConfig(scale=2), SMALL], ids=["ntire22", "x2", "small"])
def test_config_read_back(config):
    match = everything().detect(fmen.build(config).state_dict())
    assert (match.architecture.name, match.config) == ("fmen", config)


@pytest.mark.slow  # the process's first FlopCounterMode takes 4-7 s on 2 shared cores; the count itself 0.1 s
def test_complexity_matches_the_ntire22_table():
    """params 0.341 M, 22.28 G FLOPs (MACs) and 72.09 M activations at 256x256, 34 convs."""
    with torch.device("meta"):
        model = fmen.build(FMENConfig())
    figures = complexity(model, 256)
    challenge = fmen.weights[0].challenge
    assert abs(figures["params"] / 1e6 - challenge.params_m) < 0.0015
    assert abs(figures["macs"] / 1e9 / challenge.flops_g - 1) < 0.001
    assert abs(figures["activations"] / 1e6 / challenge.activations_m - 1) < 0.001
    assert figures["convs"] == challenge.convs


def to_nju_jet_layout(sd: dict) -> dict:
    """Rename like NJU-Jet/FMEN test_fmen.py: basic_blocks.i -> ERBs.i, hfabs.i -> HFABs.i."""
    return {re.sub(r"^hfabs\.", "HFABs.", re.sub(r"^basic_blocks\.", "ERBs.", k)): v for k, v in sd.items()}


def test_nju_jet_layout_converts_to_identical_network():
    torch.manual_seed(0)
    ours = fmen.build(SMALL).eval()
    theirs = to_nju_jet_layout(ours.state_dict())
    assert "ERBs.0.conv1.rep_conv.weight" in theirs and "basic_blocks.0.conv1.rep_conv.weight" not in theirs
    match = everything().detect(theirs)
    assert (match.architecture.name, match.config) == ("fmen", SMALL)
    converted = fmen.build(match.config).eval()
    converted.load_state_dict(match.state_dict, strict=True)
    x = torch.rand(1, 3, 12, 10) * 255
    with torch.inference_mode():
        assert torch.equal(converted(x), ours(x))


def test_convert_leaves_the_challenge_layout_alone():
    sd = fmen.build(SMALL).state_dict()
    assert fmen.convert(sd) is sd


@needs_zoo
def test_authors_file_is_detected_and_loads_strictly():
    w = fmen.weights[0]
    assert hashlib.sha256(FILE.read_bytes()).hexdigest() == w.sha256
    match = everything().detect(read_state_dict(FILE))
    assert (match.architecture.name, match.config) == ("fmen", FMENConfig())
    assert sum(t.numel() for t in match.state_dict.values()) == w.params
    model = fmen.build(match.config)
    model.load_state_dict(match.state_dict, strict=True)
    assert list(model.state_dict()) == list(match.state_dict)


@pytest.mark.slow  # fp16 convolutions are slow on a CPU
@needs_zoo
def test_fp16_overflows_on_a_natural_image():
    """Why fp16 is not declared: the HFAB branches outgrow fp16 before the excitation conv normalises them."""
    from PIL import Image

    lr = SHARED / "datasets" / "Set5" / "LR_bicubic" / "X4" / "babyx4.png"
    if not lr.is_file():
        pytest.skip(f"{lr} is absent")
    model = fmen.build(FMENConfig()).eval()
    model.load_state_dict(read_state_dict(FILE), strict=True)
    x = torch.from_numpy(np.array(Image.open(lr).convert("RGB"))[:16, :16]).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        assert torch.isfinite(model(x)).all()
        with torch.autocast("cpu", dtype=torch.float16):
            assert not torch.isfinite(model(x)).all()
