"""The MDRN plugin: contract, configs read back from shapes, parameter counts, and the authors' checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from esr_cli import Registry, check_architecture, read_state_dict
from esr_mdrn import MDRN, MDRNConfig, mdrn
from esr_mdrn.mdrn import MIN_SIZE

SHARED = Path(__file__).resolve().parents[3].parent / "shared"  # <repo>/../shared
WEIGHT_FILES = {"mdrn-x2": "mdrn_paper_x2.pth", "mdrn-x3": "mdrn_paper_x3.pth",
                "mdrn-x4": "mdrn_paper_x4.pth", "mdrn-s-x4": "mdrn_s_x4.pth"}


def test_contract():
    check_architecture(mdrn, Registry.of(mdrn))


@pytest.mark.parametrize("config", [MDRNConfig(scale=2), MDRNConfig(num_feat=28, scale=4),
                                    MDRNConfig(num_feat=32, num_blocks=4, scale=3)])
def test_read_config_round_trip(config):
    assert mdrn.read_config(MDRN(**vars(config)).state_dict(), None) == config


@pytest.mark.parametrize("weights", mdrn.weights, ids=lambda w: w.name)
def test_declared_params_match_the_network(weights):
    config = MDRNConfig(num_feat=28 if "-s-" in weights.name else 56, scale=weights.scale)
    with torch.device("meta"):
        model = MDRN(**vars(config))
    assert sum(p.numel() for p in model.parameters()) == weights.params


def test_mean_shift_is_inside_the_module_but_not_in_the_state_dict():
    model = MDRN(num_feat=28, scale=2)
    assert "mean" not in model.state_dict()
    assert model.half().mean.dtype == torch.float16


def test_too_small_input_is_refused_clearly():
    model = MDRN(num_feat=28, scale=2).eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, MIN_SIZE, MIN_SIZE)).shape == (1, 3, 2 * MIN_SIZE, 2 * MIN_SIZE)
        with pytest.raises(ValueError, match="at least"):
            model(torch.rand(1, 3, MIN_SIZE - 1, 64))


def test_no_plotting_or_basicsr_import():
    """The authors' module imports matplotlib and basicsr; ours must not (checked in a fresh interpreter, since other
    tests in this process may import matplotlib themselves)."""
    code = "import sys, esr_mdrn; assert not {'matplotlib', 'basicsr'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("weights", mdrn.weights, ids=lambda w: w.name)
def test_authors_checkpoint_is_detected_and_loads_strictly(weights):
    path = SHARED / "zoo" / "weights" / WEIGHT_FILES[weights.name]
    if not path.is_file():
        pytest.skip(f"{path} is absent (needs the shared weights zoo)")
    match = Registry.of(mdrn).detect(read_state_dict(path))
    assert match.config.scale == weights.scale
    assert sum(v.numel() for v in match.state_dict.values()) == weights.params
    mdrn.build(match.config).load_state_dict(match.state_dict, strict=True)
