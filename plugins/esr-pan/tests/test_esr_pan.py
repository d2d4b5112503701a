"""PAN plugin: the esr contract, config read-back (x2/x3 need the scale hint), the official checkpoints' layout."""

from pathlib import Path

import pytest
import torch

from esr_cli import EsrError, Registry, check_architecture, read_state_dict
from esr_pan import PANConfig, pan

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared"
WEIGHTS = SHARED / "zoo" / "weights"


def test_contract():
    check_architecture(pan, Registry.of(pan))


def _meta_state_dict(cfg):
    with torch.device("meta"):
        return pan.build(cfg).state_dict()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_read_config_round_trip(scale):
    cfg = PANConfig(nf=16, unf=8, nb=2, scale=scale)
    assert pan.read_config(_meta_state_dict(cfg), scale) == cfg


def test_x4_needs_no_hint_but_x2_x3_do():
    assert pan.read_config(_meta_state_dict(PANConfig(scale=4)), None).scale == 4
    one_stage = _meta_state_dict(PANConfig(scale=2))
    with pytest.raises(ValueError, match="give the scale"):
        pan.read_config(one_stage, None)
    with pytest.raises(ValueError, match="not x4"):
        pan.read_config(one_stage, 4)
    with pytest.raises(EsrError, match="give the scale"):
        Registry.of(pan).detect(one_stage)


@pytest.mark.parametrize("weights", pan.weights, ids=lambda w: w.name)
def test_official_checkpoint_loads_strictly(weights):
    path = WEIGHTS / f"pan_paper_x{weights.scale}.pth"
    if not path.is_file():
        pytest.skip(f"official weights not found at {path} (needs /work/shared)")
    sd = read_state_dict(path)
    match = Registry.of(pan).detect(sd, scale=weights.scale)
    assert match.config == PANConfig(scale=weights.scale)
    pan.build(match.config).load_state_dict(match.state_dict, strict=True)
    assert sum(v.numel() for v in sd.values()) == weights.params
