"""esr-imdn: the contract for every architecture, the KAIR key conversion, and the published files (when shared/)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

import esr_cli
from esr_cli import Registry, check_architecture, read_state_dict
from esr_imdn import imdn, imdn_ntire22, imdn_plus, imdn_rtc, imdn_rte
from esr_imdn.imdn_rtc import IMDNBaseline

ARCHS = (imdn, imdn_rtc, imdn_ntire22, imdn_plus, imdn_rte)
REGISTRY = Registry.of(*ARCHS)
SHARED = Path(__file__).resolve().parents[3].parent / "shared"
ZOO = SHARED / "zoo" / "weights"
needs_zoo = pytest.mark.skipif(not ZOO.is_dir(), reason=f"shared weights not found at {ZOO}")

FILES = {  # shared zoo file -> (architecture, weights name)
    "imdn_paper_x2.pth": ("imdn", "imdn-x2"),
    "imdn_paper_x3.pth": ("imdn", "imdn-x3"),
    "imdn_paper_x4.pth": ("imdn", "imdn-x4"),
    "imdn_rtc_x2.pth": ("imdn-rtc", "imdn-rtc-x2"),
    "imdn_ntire22baseline_x4.pth": ("imdn-ntire22", "imdn-ntire22-x4"),
    "imdn_plus_ntire22_x4.pth": ("imdn-plus", "imdn-plus-x4"),
    "imdn_nb7_ntire22_x4.pth": ("imdn-ntire22", "imdn-ntire22-nb7-x4"),
    "imdn_rte_x2.pth": ("imdn-rte", "imdn-rte-x2"),
}

KAIR_NAMES = {".c1.": ".conv1.0.", ".c2.": ".conv2.0.", ".c3.": ".conv3.0.", ".c4.": ".conv4.", ".c5.": ".conv1x1."}


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_contract(arch):
    check_architecture(arch, REGISTRY)


def test_weights_names_are_unique_and_prefixed():
    names = [w.name for a in ARCHS for w in a.weights]
    assert len(names) == len(set(names))
    assert all(w.name.startswith(a.name + "-") for a in ARCHS for w in a.weights)


def test_kair_layout_loads_into_the_baseline():
    torch.manual_seed(0)
    net = IMDNBaseline(channels=16, blocks=2, scale=2).eval()
    kair = {}
    for key, value in net.state_dict().items():
        for ours, theirs in KAIR_NAMES.items():
            if key.startswith("model.1.sub.") and ours in key:
                key = key.replace(ours, theirs)
        kair[key] = value
    assert "model.1.sub.0.conv1x1.weight" in kair
    match = REGISTRY.detect(kair)
    assert match.architecture is imdn_ntire22
    fresh = imdn_ntire22.build(match.config).eval()
    fresh.load_state_dict(match.state_dict, strict=True)
    x = torch.rand(1, 3, 12, 10)
    with torch.inference_mode():
        assert torch.equal(fresh(x), net(x))


@needs_zoo
@pytest.mark.parametrize("file", sorted(FILES))
def test_published_file_is_detected_and_loads(file):
    arch_name, weights_name = FILES[file]
    path = ZOO / file
    arch, weights = REGISTRY.find_weights(weights_name)
    assert arch.name == arch_name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == weights.sha256
    sd = read_state_dict(path)
    assert sum(v.numel() for v in sd.values()) == weights.params
    match = REGISTRY.detect(sd)
    assert (match.architecture.name, match.config.scale) == (arch_name, weights.scale)
    match.architecture.build(match.config).load_state_dict(match.state_dict, strict=True)


@needs_zoo
def test_any_scale_imdn_as_is_not_claimed():
    """IMDN-AS keeps the input size (its input is pre-upsampled), so it is outside the fixed-scale contract."""
    with pytest.raises(esr_cli.EsrError, match="no installed architecture"):
        REGISTRY.detect(read_state_dict(ZOO / "imdn_as_xany.pth"))
