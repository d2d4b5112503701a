"""esr-rfdn: contract, config read-back, the NTIRE 2022 key layout of RLFN, and the authors' files."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

from esr_cli import Registry, check_architecture, read_state_dict
from esr_rfdn import RFDNConfig, RLFNConfig, rfdn, rlfn

REPO = Path(__file__).resolve().parents[3]
WEIGHTS = REPO.parent / "shared" / "zoo" / "weights"
needs_zoo = pytest.mark.skipif(not WEIGHTS.is_dir(), reason=f"shared weights not found at {WEIGHTS}")

BOTH = Registry.of(rfdn, rlfn)
NTIRE22 = RLFNConfig(channels=46, mid_channels=48, blocks=4, scale=4)
FILES = {  # file -> (architecture, config read from its shapes)
    "rfdn_aim2020_x4.pth": ("rfdn", RFDNConfig()),
    "rlfn_paper_x2.pth": ("rlfn", RLFNConfig(scale=2)),
    "rlfn_paper_x4.pth": ("rlfn", RLFNConfig()),
    "rlfn_s_x2.pth": ("rlfn", RLFNConfig(channels=48, mid_channels=48, scale=2)),
    "rlfn_s_x4.pth": ("rlfn", RLFNConfig(channels=48, mid_channels=48)),
    "rlfn_ntire22_x4.pth": ("rlfn", NTIRE22),
}


@pytest.mark.slow  # 5-8 s on 2 cores: three full-size builds per architecture
@pytest.mark.parametrize("arch", [rfdn, rlfn], ids=lambda a: a.name)
def test_contract(arch):
    check_architecture(arch, BOTH)


@pytest.mark.parametrize("arch,config", [
    (rlfn, NTIRE22),
    (rlfn, RLFNConfig(channels=48, mid_channels=48, scale=2)),
    (rfdn, RFDNConfig(channels=16, blocks=2, esa_channels=4, scale=3)),
], ids=["rlfn-ntire22", "rlfn-s", "rfdn-small"])
def test_config_read_back(arch, config):
    match = BOTH.detect(arch.build(config).state_dict())
    assert (match.architecture.name, match.config) == (arch.name, config)


def test_esa_conv_group_is_the_difference():
    rfdn_esa = {k.split(".")[2] for k in rfdn.build(RFDNConfig()).state_dict() if ".esa." in k}
    rlfn_esa = {k.split(".")[2] for k in rlfn.build(RLFNConfig()).state_dict() if ".esa." in k}
    assert rfdn_esa - rlfn_esa == {"conv_max", "conv3_"}
    assert rlfn_esa < rfdn_esa


def to_ntire_layout(sd: dict) -> dict:
    """Rename like ofsoundof/NTIRE2022_ESR team04_rlfn.pth: conv_1 -> fea_conv, block_i -> Bi, conv_2 -> LR_conv."""
    names = ((r"^conv_1\.", "fea_conv."), (r"^block_(\d+)\.", r"B\1."), (r"^conv_2\.", "LR_conv."))
    out = {}
    for key, tensor in sd.items():
        for pattern, replacement in names:
            key = re.sub(pattern, replacement, key)
        out[key] = tensor
    return out


def test_ntire_layout_converts_to_identical_network():
    torch.manual_seed(0)
    ours = rlfn.build(NTIRE22).eval()
    ntire = to_ntire_layout(ours.state_dict())
    assert "fea_conv.weight" in ntire and "B4.esa.conv3.weight" in ntire and "conv_1.weight" not in ntire
    match = BOTH.detect(ntire)
    assert (match.architecture.name, match.config) == ("rlfn", NTIRE22)
    converted = rlfn.build(match.config).eval()
    converted.load_state_dict(match.state_dict, strict=True)
    x = torch.rand(1, 3, 20, 24) * 255
    with torch.inference_mode():
        assert torch.equal(converted(x), ours(x))


def test_convert_leaves_other_layouts_alone():
    native = rlfn.build(RLFNConfig(scale=2)).state_dict()
    assert rlfn.convert(native) is native
    rfdn_sd = rfdn.build(RFDNConfig()).state_dict()  # also fea_conv / B1.. / LR_conv, but RFDB inside
    assert BOTH.detect(rfdn_sd).architecture.name == "rfdn"


@needs_zoo
@pytest.mark.parametrize("file", sorted(FILES))
def test_authors_files_detect_structurally(file):
    sd = read_state_dict(WEIGHTS / file)
    name, config = FILES[file]
    match = BOTH.detect(sd)
    assert (match.architecture.name, match.config) == (name, config)
    other = rlfn if name == "rfdn" else rfdn
    with pytest.raises(Exception, match="no installed architecture"):
        Registry.of(other).detect(sd)


@needs_zoo
def test_authors_ntire_file_in_challenge_layout():
    sd = read_state_dict(WEIGHTS / "rlfn_ntire22_x4.pth")
    match = BOTH.detect(to_ntire_layout(sd))
    assert (match.architecture.name, match.config) == ("rlfn", NTIRE22)
    assert all(torch.equal(match.state_dict[k], v) for k, v in sd.items())


@needs_zoo
def test_weights_metadata_matches_files():
    by_url = {w.url.rsplit("/", 1)[1]: w for arch in (rfdn, rlfn) for w in arch.weights}
    local = {"RFDN_AIM.pth": "rfdn_aim2020_x4.pth", "rlfn_x2.pth": "rlfn_paper_x2.pth",
             "rlfn_x4.pth": "rlfn_paper_x4.pth", "rlfn_ntire_x4.pth": "rlfn_ntire22_x4.pth"}
    assert len(by_url) == 6
    for upstream, w in by_url.items():
        path = WEIGHTS / local.get(upstream, upstream)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == w.sha256, w.name
        sd = read_state_dict(path)
        assert sum(t.numel() for t in sd.values()) == w.params, w.name
        assert BOTH.detect(sd).config.scale == w.scale, w.name
