"""esr-rfdn: contract, config read-back, the NTIRE 2022 key layout of RLFN, the pruned RFDN that shares RFDN's
tensors (never loaded as rfdn), PlainRFDN and RePAFDN, and the authors' files."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

from esr_cli import EsrError, Registry, check_architecture, load_model, read_state_dict
from esr_cli.errors import AmbiguousModel
from esr_cli.models import locate
from esr_rfdn import (PlainRFDNConfig, RePAFDNConfig, RFDNConfig, RFDNPruneConfig, RLFNConfig, plainrfdn, repafdn, rfdn,
                      rfdn_prune, rlfn)

REPO = Path(__file__).resolve().parents[3]
WEIGHTS = REPO.parent / "shared" / "zoo" / "weights"
needs_zoo = pytest.mark.skipif(not WEIGHTS.is_dir(), reason=f"shared weights not found at {WEIGHTS}")

BOTH = Registry.of(rfdn, rlfn)
ARCHS = (rfdn, rfdn_prune, plainrfdn, repafdn, rlfn)
ALL = Registry.of(*ARCHS)
SET5 = REPO.parent / "shared" / "datasets" / "Set5"
PRUNED = WEIGHTS / "rfdn_prune_ntire22_x4.pth"
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
@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_contract(arch):
    check_architecture(arch, ALL)


@pytest.mark.parametrize("arch,config", [
    (rlfn, NTIRE22),
    (rlfn, RLFNConfig(channels=48, mid_channels=48, scale=2)),
    (rfdn, RFDNConfig(channels=16, blocks=2, esa_channels=4, scale=3)),
    (rfdn_prune, RFDNPruneConfig(channels=16, blocks=2, esa_channels=4, scale=3)),
    (plainrfdn, PlainRFDNConfig(channels=16, blocks=2, distilled=6, esa_channels=5, scale=2)),
    (repafdn, RePAFDNConfig(channels=16, short_blocks=2, short_distilled=8, distilled=4, esa_channels=4, scale=3)),
], ids=["rlfn-ntire22", "rlfn-s", "rfdn-small", "rfdn-prune-small", "plainrfdn-small", "repafdn-small"])
def test_config_read_back(arch, config):
    sd = arch.build(config).state_dict()
    try:
        match = ALL.detect(sd)
    except AmbiguousModel as e:  # rfdn and rfdn-prune read the same tensors
        assert set(e.candidates) == {"rfdn", "rfdn-prune"}
        match = ALL.detect(sd, arch=arch.name)
    assert (match.architecture.name, match.config) == (arch.name, config)


def test_rfdn_and_rfdn_prune_differ_only_in_the_shallow_residual():
    """The pruned RFDN is RFDN with each residual's identity folded into its 3x3 conv: add 1 to the centre tap of
    every c{1,2,3}_r weight's diagonal and the two networks agree."""
    torch.manual_seed(0)
    shape = dict(channels=16, blocks=2, esa_channels=4, scale=2)
    aim = rfdn.build(RFDNConfig(**shape)).double().eval()
    folded = {k: v.clone() for k, v in aim.state_dict().items()}
    for key, weight in folded.items():
        if re.fullmatch(r"B\d+\.c[123]_r\.weight", key):
            weight[range(16), range(16), 1, 1] += 1
    pruned = rfdn_prune.build(RFDNPruneConfig(**shape)).double().eval()
    pruned.load_state_dict(folded, strict=True)
    x = torch.rand(1, 3, 20, 24, dtype=torch.float64) * 255
    with torch.inference_mode():
        assert torch.allclose(pruned(x), aim(x), rtol=0, atol=1e-9)
        assert not torch.allclose(rfdn_prune.build(RFDNPruneConfig(**shape)).double().eval()(x), aim(x))


def test_an_unknown_file_of_the_rfdn_layout_needs_an_arch(tmp_path):
    """A file that no zoo entry knows, with RFDN's keys and shapes: refused until --arch names rfdn or rfdn-prune."""
    torch.manual_seed(0)
    path = tmp_path / "mystery.pth"
    torch.save(rfdn_prune.build(RFDNPruneConfig(channels=16, blocks=2, esa_channels=4, scale=2)).state_dict(), path)
    with pytest.raises(AmbiguousModel, match="--arch") as refused:
        load_model(path, device="cpu")
    assert {"rfdn", "rfdn-prune"} <= set(refused.value.candidates)
    for name in ("rfdn-prune", "rfdn"):
        match, weights = locate(path, arch=name)
        assert (match.architecture.name, weights) == (name, None)
    up = load_model(path, arch="rfdn-prune", device="cpu", precision="fp32")
    assert tuple(up.upscale(torch.rand(1, 3, 20, 24)).shape) == (1, 3, 40, 48)


def test_plainrfdn_tiles_on_its_stride_7_grid(tmp_path):
    """PlainRFDN's ESA pools with stride 7: a tiled run starts its windows on multiples of 7 (tile_grid), else the
    pooled map's resampling refuses the window."""
    torch.manual_seed(0)
    path = tmp_path / "plain.pth"
    torch.save(plainrfdn.build(PlainRFDNConfig(channels=16, blocks=1, distilled=6, esa_channels=5, scale=2))
               .state_dict(), path)
    x = torch.rand(1, 3, 45, 52)
    whole = load_model(path, device="cpu", precision="fp32").upscale(x)
    tiled = load_model(path, device="cpu", precision="fp32", tile=16, tile_overlap=16).upscale(x)
    assert tiled.shape == whole.shape == (1, 3, 90, 104)


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


NTIRE22_FILES = {  # file -> (architecture, config read from its shapes)
    "rfdn_prune_ntire22_x4.pth": ("rfdn-prune", RFDNPruneConfig()),
    "plainrfdn_ntire22_x4.pth": ("plainrfdn", PlainRFDNConfig()),
    "repafdn_ntire22_x4.pth": ("repafdn", RePAFDNConfig()),
}


@needs_zoo
@pytest.mark.parametrize("file", sorted(NTIRE22_FILES))
def test_ntire22_files_load_strict(file):
    """PlainRFDN and RePAFDN are detected as themselves only; the pruned RFDN fits rfdn too (same tensors)."""
    sd = read_state_dict(WEIGHTS / file)
    name, config = NTIRE22_FILES[file]
    try:
        candidates = [ALL.detect(sd).architecture.name]
    except AmbiguousModel as e:
        candidates = e.candidates
    assert candidates == (["rfdn", "rfdn-prune"] if name == "rfdn-prune" else [name])
    match = ALL.detect(sd, arch=name)
    assert match.config == config
    ALL.get(name).build(match.config).load_state_dict(match.state_dict, strict=True)


@needs_zoo
def test_the_pruned_file_is_never_loaded_as_rfdn():
    """Its tensors fit rfdn (26.10 dB on Set5 that way): the file is known by its sha256, also under --arch rfdn."""
    match, weights = locate(PRUNED)
    assert (match.architecture.name, weights.name) == ("rfdn-prune", "rfdn-prune-ntire22-x4")
    assert match.config == RFDNPruneConfig()
    assert load_model(PRUNED, device="cpu").name == "rfdn-prune-ntire22-x4"
    with pytest.raises(EsrError, match="a rfdn-prune model, not rfdn"):
        locate(PRUNED, arch="rfdn")


@pytest.mark.slow  # about 20 s on 2 cores
@pytest.mark.skipif(not PRUNED.is_file() or not SET5.is_dir(), reason=f"needs {PRUNED} and {SET5}")
def test_the_pruned_file_by_path_gives_the_authors_set5():
    from esr_cli.evaluation import evaluate

    (result,) = evaluate([PRUNED], [SET5], device="cpu", precision="fp32")
    assert result.model == "rfdn-prune-ntire22-x4"
    assert abs(result.psnr - 32.1452) <= 0.01  # SOURCES.json our_check; as rfdn it would be 26.10


@needs_zoo
def test_weights_metadata_matches_files():
    by_url = {w.url.rsplit("/", 1)[1]: (arch, w) for arch in ARCHS for w in arch.weights}
    local = {"RFDN_AIM.pth": "rfdn_aim2020_x4.pth", "rlfn_x2.pth": "rlfn_paper_x2.pth",
             "rlfn_x4.pth": "rlfn_paper_x4.pth", "rlfn_ntire_x4.pth": "rlfn_ntire22_x4.pth",
             "team40_rfdn_pruned.pth": "rfdn_prune_ntire22_x4.pth", "team05_efdn.pt": "plainrfdn_ntire22_x4.pth",
             "team10_repafdn.pth": "repafdn_ntire22_x4.pth"}
    assert len(by_url) == 9
    for upstream, (arch, w) in by_url.items():
        path = WEIGHTS / local.get(upstream, upstream)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == w.sha256, w.name
        sd = read_state_dict(path)
        assert sum(t.numel() for t in sd.values()) == w.params, w.name
        assert ALL.detect(sd, arch=arch.name).config.scale == w.scale, w.name
