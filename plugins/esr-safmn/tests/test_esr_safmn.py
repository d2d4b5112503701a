"""The SAFMN plugin: contract for SAFMN / GFMN / SAFMN++, configs read back from shapes, distinct detection, and the
authors' checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from esr_cli import Registry, check_architecture, default_registry, read_state_dict
from esr_safmn import gfmn, safmn, safmnpp
from esr_safmn.gfmn import GFMNConfig
from esr_safmn.safmn import SAFMNConfig
from esr_safmn.safmnpp import SAFMNPPConfig

SHARED = Path(__file__).resolve().parents[3].parent / "shared"  # <repo>/../shared
ARCHS = (safmn, gfmn, safmnpp)
WEIGHT_FILES = {"safmn-ntire23-x4": "safmn_ntire23_x4.pth", "gfmn-x4": "gfmn_ntire23_x4.pth",
                "safmnpp-x4": "safmnpp_ntire24_x4.pth"}
NTIRE23_SAFMN = SAFMNConfig(grn=True)


def everything() -> Registry:
    """Every installed architecture plus ours (installed or not), so detection is checked against all of them."""
    return Registry.of(*default_registry().architectures.values(), *ARCHS)


@pytest.mark.slow  # 4-10 s of CPU each: forward passes at 128x136 for x2, x3, x4
@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_contract(arch):
    check_architecture(arch, everything())


@pytest.mark.slow
def test_contract_of_the_ntire23_grn_variant():
    check_architecture(safmn, everything(), config=NTIRE23_SAFMN)


@pytest.mark.parametrize("arch, config", [
    (safmn, SAFMNConfig(scale=2)), (safmn, NTIRE23_SAFMN), (safmn, SAFMNConfig(dim=48, n_blocks=4, ffn_scale=1.5)),
    (gfmn, GFMNConfig(scale=3)), (gfmn, GFMNConfig(dim=24, n_blocks=2, ffn_scale=1.5)),
    (safmnpp, SAFMNPPConfig(scale=2)), (safmnpp, SAFMNPPConfig(dim=48, n_blocks=3, ffn_scale=2.0)),
], ids=str)
def test_read_config_round_trip(arch, config):
    assert arch.read_config(arch.build(config).state_dict(), None) == config


@pytest.mark.parametrize("arch, config", [(safmn, NTIRE23_SAFMN), (gfmn, GFMNConfig()), (safmnpp, SAFMNPPConfig())],
                         ids=lambda x: getattr(x, "name", ""))
def test_declared_params_match_the_network(arch, config):
    with torch.device("meta"):
        model = arch.build(config)
    assert sum(p.numel() for p in model.parameters()) == arch.weights[0].params


def test_paper_safmn_sizes():
    """The ICCV 2023 table: 228K / 233K / 240K parameters at x2 / x3 / x4 (36 ch, 8 blocks, no GRN)."""
    counts = [sum(p.numel() for p in safmn.build(SAFMNConfig(scale=s)).parameters()) for s in (2, 3, 4)]
    assert counts == [227_820, 232_695, 239_520]


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_each_is_detected_only_as_itself(arch):
    others = [a for a in ARCHS if a is not arch]
    state = arch.build(arch.config()).state_dict()
    assert everything().detect(state).architecture is arch
    assert not any(set(a.detect) <= set(state) for a in others), "detect keys are not distinct"


@pytest.mark.parametrize("arch, config", [(safmn, NTIRE23_SAFMN), (gfmn, GFMNConfig()), (safmnpp, SAFMNPPConfig())],
                         ids=lambda x: getattr(x, "name", ""))
def test_smallest_padded_input_runs(arch, config):
    """An 8x8 input (one size_multiple) is below the reference's coarsest pooling level; it must still run."""
    model = arch.build(dataclasses.replace(config, scale=2)).eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 8, 16)).shape == (1, 3, 16, 32)


@pytest.mark.parametrize("weights", [w for a in ARCHS for w in a.weights], ids=lambda w: w.name)
def test_authors_checkpoint_is_detected_and_loads_strictly(weights):
    path = SHARED / "zoo" / "weights" / WEIGHT_FILES[weights.name]
    if not path.is_file():
        pytest.skip(f"{path} is absent (needs the shared weights zoo)")
    match = everything().detect(read_state_dict(path))
    assert weights in match.architecture.weights
    assert match.config.scale == weights.scale
    assert sum(v.numel() for v in match.state_dict.values()) == weights.params
    match.architecture.build(match.config).load_state_dict(match.state_dict, strict=True)


def test_ntire23_safmn_checkpoint_reads_as_the_grn_variant():
    path = SHARED / "zoo" / "weights" / WEIGHT_FILES["safmn-ntire23-x4"]
    if not path.is_file():
        pytest.skip(f"{path} is absent (needs the shared weights zoo)")
    assert safmn.read_config(read_state_dict(path), None) == NTIRE23_SAFMN
