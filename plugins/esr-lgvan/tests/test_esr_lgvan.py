"""LGVAN plugin: the esr contract, config read-back, and the official checkpoint's layout."""

from pathlib import Path

import pytest
import torch

from esr_cli import Registry, check_architecture, read_state_dict
from esr_lgvan import LGVANConfig, lgvan

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared"
WEIGHTS = SHARED / "zoo" / "weights" / "lgvan_ntire23_x4.pth"


def test_contract():
    check_architecture(lgvan, Registry.of(lgvan))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_read_config_round_trip(scale):
    cfg = LGVANConfig(num_feat=16, num_block=2, scale=scale)
    with torch.device("meta"):
        sd = lgvan.build(cfg).state_dict()
    assert lgvan.read_config(sd, None) == cfg


def test_odd_sizes_keep_shape():
    torch.manual_seed(0)
    net = lgvan.build(LGVANConfig(num_feat=8, num_block=1, scale=4)).eval()
    with torch.inference_mode():
        assert net(torch.rand(1, 3, 7, 11)).shape == (1, 3, 28, 44)


@pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"official weights not found at {WEIGHTS} (needs /work/shared)")
def test_official_checkpoint_loads_strictly():
    sd = read_state_dict(WEIGHTS)
    match = Registry.of(lgvan).detect(sd)
    assert match.config == LGVANConfig()
    net = lgvan.build(match.config)
    net.load_state_dict(match.state_dict, strict=True)
    assert sum(v.numel() for v in sd.values()) == lgvan.weights[0].params == 118_243
