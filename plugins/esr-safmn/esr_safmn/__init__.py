"""SAFMN, GFMN, SAFMN++ (sunny2109/SAFMN), SMFAN and SAFMNv3 (the same lab's NTIRE 2024 / 2025 ESR entries) as esr
architectures."""

from __future__ import annotations

from esr_cli import Architecture, Challenge, StateDict, Weights, count_blocks, shuffle_scale

from .gfmn import GFMN, GFMNConfig
from .safmn import SAFMN, SAFMNConfig
from .safmnpp import SAFMNPP, SAFMNPPConfig
from .safmnv3 import SAFMNv3, SAFMNv3Config
from .smfan import SMFAN, SMFANConfig

__all__ = ["safmn", "gfmn", "safmnpp", "smfan", "safmnv3", "SAFMN", "GFMN", "SAFMNPP", "SMFAN", "SAFMNv3"]

SOURCE = "https://github.com/sunny2109/SAFMN"
RAW = "https://raw.githubusercontent.com/sunny2109/SAFMN/68c2182e4f8829a979886b0a1cab8f269f91b321"
NTIRE24 = "https://github.com/Amazingren/NTIRE2024_ESR"
NTIRE25 = "https://github.com/Amazingren/NTIRE2025_ESR"


def _dim_scale(sd: StateDict) -> tuple[int, int]:
    return sd["to_feat.weight"].shape[0], shuffle_scale(sd["to_img.0.weight"].shape[0])


def read_safmn(sd: StateDict, scale: int | None = None) -> SAFMNConfig:
    dim, scale = _dim_scale(sd)
    hidden = sd["feats.0.ccm.ccm.0.weight"].shape[0]
    return SAFMNConfig(dim, count_blocks(sd, "feats"), hidden / dim, "norm.gamma" in sd, scale)


def read_gfmn(sd: StateDict, scale: int | None = None) -> GFMNConfig:
    dim, scale = _dim_scale(sd)
    hidden = sd["feats.0.ffd.project_out.weight"].shape[1]
    return GFMNConfig(dim, count_blocks(sd, "feats"), hidden / dim, scale)


def read_safmnpp(sd: StateDict, scale: int | None = None) -> SAFMNPPConfig:
    dim, scale = _dim_scale(sd)
    hidden = sd["feats.0.conv2.conv1.weight"].shape[0]
    return SAFMNPPConfig(dim, count_blocks(sd, "feats"), hidden / dim, scale)


def read_smfan(sd: StateDict, scale: int | None = None) -> SMFANConfig:
    dim, scale = _dim_scale(sd)
    hidden = sd["feats.0.pcfn.conv_0.weight"].shape[0]
    return SMFANConfig(dim, count_blocks(sd, "feats"), hidden / dim, scale)


def read_safmnv3(sd: StateDict, scale: int | None = None) -> SAFMNv3Config:
    dim, scale = _dim_scale(sd)
    hidden = sd["feats.0.conv2.conv1.weight"].shape[0]
    split = sd["feats.0.conv1.conv1.weight"].shape[0]
    return SAFMNv3Config(dim, count_blocks(sd, "feats"), hidden / dim, split, scale)


safmn = Architecture(
    name="safmn",
    tile_overlap=64,  # the 1/16 cells reach far: Set14 x4, tiles of 64, overlap 32 gave up to 14 levels; 64: 1
    model=SAFMN,
    config=SAFMNConfig,
    detect=("to_feat.weight", "feats.0.safm.aggr.weight", "feats.0.ccm.ccm.0.weight", "to_img.0.weight"),
    read_config=read_safmn,
    paper="Spatially-Adaptive Feature Modulation for Efficient Image Super-Resolution (ICCV 2023)",
    size_multiple=8,
    weights=(
        Weights(
            name="safmn-ntire23-x4",
            scale=4,
            url=f"{RAW}/NTIRE2023_ESR/model_zoo/team15_SAFMN.pth",
            sha256="93fe3d7175ef1446cfcb3a884ddf8bbb4391f31190e9d1bf6c6c1cb768f8b565",
            license="Apache-2.0",
            source=SOURCE,
            params=237_000,
            variant="NTIRE 2023 ESR entry (team15): 36 ch, 8 blocks, GRN",
            reference_psnr=32.1645,
        ),
    ),
)

gfmn = Architecture(
    name="gfmn",
    tile_overlap=64,  # the 1/16 cells reach far: Set14 x4, tiles of 64, overlap 32 gave up to 14 levels; 64: 1
    model=GFMN,
    config=GFMNConfig,
    detect=("to_feat.weight", "feats.0.norm1.weight", "feats.0.safm.aggr.weight", "feats.0.ffd.project_in.weight",
            "to_img.0.weight"),
    read_config=read_gfmn,
    paper="GFMN, gated feature modulation network (NTIRE 2023 ESR challenge, team14)",
    # Set5 change, weights converted (benchmarks/precision.py): fp16 -0.0033 dB; bf16 -0.0564 dB, past the 0.05 limit
    precisions=("fp16",),
    size_multiple=8,
    weights=(
        Weights(
            name="gfmn-x4",
            scale=4,
            url=f"{RAW}/NTIRE2023_ESR/model_zoo/team14_GFMN.pth",
            sha256="10da4b48c62646c1af394b531ef3a574a9be481e03bb3e44123a2e5b5fcb9128",
            license="Apache-2.0",
            source=SOURCE,
            params=103_872,
            variant="NTIRE 2023 ESR entry (team14): 36 ch, 8 blocks",
            reference_psnr=32.1133,
            challenge=Challenge("NTIRE 2023 ESR", 2023, team="team14 GFMN", params_m=0.104, flops_g=6.56,
                                activations_m=199.35, source="third-party study deck (shared/seeds), secondary"),
        ),
    ),
)

safmnpp = Architecture(
    name="safmnpp",
    tile_overlap=32,  # Set14 x4, tiles of 64: 0.09% of pixels differ by 1 level (16: up to 2 levels)
    model=SAFMNPP,
    config=SAFMNPPConfig,
    detect=("to_feat.weight", "feats.0.conv1.proj.weight", "feats.0.conv2.conv1.weight", "to_img.0.weight"),
    read_config=read_safmnpp,
    paper="SAFMN++: Improved Feature Modulation Network for Efficient Image Super-Resolution (NTIRE 2024 ESR, team23)",
    size_multiple=8,
    weights=(
        Weights(
            name="safmnpp-x4",
            scale=4,
            url=f"{RAW}/NTIRE2024_ESR/model_zoo/team23_safmnpp.pth",
            sha256="03bf96b5a50f43123d22c3a257341d536118250f7157f12d2832915be4f52685",
            license="Apache-2.0",
            source=SOURCE,
            params=211_572,
            variant="NTIRE 2024 ESR entry (team23): 36 ch, 6 blocks, ffn 1.5",
            reference_psnr=32.0177,
            challenge=Challenge("NTIRE 2024 ESR", 2024, team="team23 SAFMN++", params_m=0.212, flops_g=13.86,
                                activations_m=69.28, convs=32, runtime_ms=9.12, memory_mb=280.67,
                                gpu="the team's own GPU (official script)", val_psnr=26.90,
                                source="sunny2109/SAFMN NTIRE2024_ESR/results.txt"),
        ),
    ),
)

smfan = Architecture(
    name="smfan",
    tile_overlap=64,
    model=SMFAN,
    config=SMFANConfig,
    detect=("to_feat.weight", "feats.0.smfa.linear_0.weight", "feats.0.smfa.lde.conv_0.0.weight",
            "feats.0.pcfn.conv_0.weight", "to_img.0.weight"),
    read_config=read_smfan,
    paper="SMFANet: A Lightweight Self-Modulation Feature Aggregation Network for Efficient Image Super-Resolution "
          "(ECCV 2024); its NTIRE 2024 ESR version (team24)",
    # Set5 change, weights converted (benchmarks/precision.py): bf16 -0.0280 dB; fp16 overflows on 1 of 5 (rerun)
    precisions=("bf16",),
    min_size=2,  # the unbiased spatial variance needs 2 pixels; no size multiple: the 1/8 cells are adaptive
    weights=(
        Weights(
            name="smfan-x4",
            scale=4,
            url="https://raw.githubusercontent.com/Amazingren/NTIRE2024_ESR/6404fa48dde4a4adbf241a51debdc661aef20449/"
                "model_zoo/team24_smfan.pth",
            sha256="e1e3395edd90cab47c66eaac3c86dac600bda10a9fb6395aa4e55311533b403e",
            license="MIT",
            source=NTIRE24,
            params=84_408,
            variant="NTIRE 2024 ESR entry (team24): 24 ch, 8 blocks, ffn 1.5",
            reference_psnr=32.0386,
            challenge=None,
        ),
    ),
)

safmnv3 = Architecture(
    name="safmnv3",
    tile_overlap=64,
    model=SAFMNv3,
    config=SAFMNv3Config,
    detect=("to_feat.weight", "feats.0.conv1.conv1.weight", "feats.0.conv1.conv3.weight", "feats.0.conv1.dwconv.weight",
            "feats.0.conv2.conv1.weight", "to_img.0.weight"),
    read_config=read_safmnv3,
    paper="SAFMNv3: Simple Feature Modulation Network for Real-Time Image Super-Resolution (NTIRE 2025 ESR, team19)",
    # Set5 change, weights converted (benchmarks/precision.py): fp16 +0.0002 dB, bf16 -0.0069 dB
    precisions=("fp16", "bf16"),
    size_multiple=8,
    tile_grid=8,  # the 1/8 max-pooled map is resized back bilinearly
    weights=(
        Weights(
            name="safmnv3-x4",
            scale=4,
            url="https://raw.githubusercontent.com/Amazingren/NTIRE2025_ESR/b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4/"
                "model_zoo/team19_safmnv3.pth",
            sha256="07ca690f7935b97978a36bbb2e82aa821ffea7d38555eeb8468ee9e1425bd4dd",
            license="MIT",
            source=NTIRE25,
            params=144_672,
            variant="NTIRE 2025 ESR entry (team19): 40 ch, 6 blocks, ffn 1.5, split 12",
            reference_psnr=32.0309,
            challenge=None,
        ),
    ),
)
