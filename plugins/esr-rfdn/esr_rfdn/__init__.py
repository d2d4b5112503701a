"""esr plugin: RFDN and RLFN, two efficient SR networks built on Enhanced Spatial Attention (ESA), and three RFDN
variants of the NTIRE 2022 ESR challenge: MegSR's pruned RFDN, NEESR's PlainRFDN and Super's RePAFDN."""

from __future__ import annotations

import dataclasses
import functools
import re

from esr_cli import Architecture, Challenge, StateDict, Weights, count_blocks, pruning, reparam, shuffle_scale

from .esa import PARALLEL_STRIDE, STRIDE
from .plainrfdn import PlainRFDN, PlainRFDNConfig
from .repafdn import RePAFDN, RePAFDNConfig
from .rfdn import RFDN, RFDNConfig, RFDNPruneConfig
from .rlfn import RLFN, RLFNConfig

__all__ = ["rfdn", "rfdn_prune", "plainrfdn", "repafdn", "rlfn", "RFDN", "RFDNConfig", "RFDNPruneConfig",
           "PlainRFDN", "PlainRFDNConfig", "RePAFDN", "RePAFDNConfig", "RLFN", "RLFNConfig"]

RLFN_REPO = "bytedance/RLFN"
RLFN_RAW = f"https://raw.githubusercontent.com/{RLFN_REPO}/bccfde91bf8b2de80789ec033a029e6f2a932330/model_zoo"


def read_rfdn_config(sd: StateDict, scale: int | None = None, config: type = RFDNConfig) -> RFDNConfig:
    """The shapes of RFDN and of the pruned RFDN; `config` (the architecture's) fixes the shallow residual."""
    return config(
        channels=sd["fea_conv.weight"].shape[0],
        blocks=count_blocks(sd, "B"),
        esa_channels=sd["B1.esa.conv1.weight"].shape[0],
        scale=shuffle_scale(sd["upsampler.0.weight"].shape[0]),  # 3 * scale**2
    )


def read_plainrfdn_config(sd: StateDict, scale: int | None = None) -> PlainRFDNConfig:
    return PlainRFDNConfig(
        channels=sd["fea_conv.weight"].shape[0],
        blocks=count_blocks(sd, "B"),
        distilled=sd["B1.c1_d.weight"].shape[0],
        esa_channels=sd["B1.esa.conv1.weight"].shape[0],
        scale=shuffle_scale(sd["upsampler.0.weight"].shape[0]),
    )


def train_plainrfdn(config: PlainRFDNConfig) -> PlainRFDN:
    """PlainRFDN as NEESR trained it: every re-parameterised 3x3 (`*.conv3x3`: c1_r, c2_r, c3_r, c4 of each block)
    is an edge-oriented block (ECBSR's ECB: 3x3, 1x1-3x3, 1x1-Sobel-x/y, 1x1-Laplacian)."""
    return reparam.expand(PlainRFDN(**dataclasses.asdict(config)), reparam.ECB,
                          lambda name, conv: name.endswith("conv3x3"))


def read_repafdn_config(sd: StateDict, scale: int | None = None) -> RePAFDNConfig:
    last = count_blocks(sd, "B")  # B1..B{last-1} are FDB_S, B{last} the FDB
    return RePAFDNConfig(
        channels=sd["fea_conv.weight"].shape[0],
        short_blocks=last - 1,
        short_distilled=sd["B1.c1_d.weight"].shape[0],
        distilled=sd[f"B{last}.c1_d.weight"].shape[0],
        esa_channels=sd["B1.esa.conv1.weight"].shape[0],
        scale=shuffle_scale(sd["upsampler.0.weight"].shape[0]),
    )


def read_rlfn_config(sd: StateDict, scale: int | None = None) -> RLFNConfig:
    return RLFNConfig(
        channels=sd["conv_1.weight"].shape[0],
        mid_channels=sd["block_1.c1_r.weight"].shape[0],
        blocks=count_blocks(sd, "block_"),
        esa_channels=sd["block_1.esa.conv1.weight"].shape[0],
        scale=shuffle_scale(sd["upsampler.0.weight"].shape[0]),
    )


def rlfn_channel_groups(blocks: int) -> list[pruning.ChannelGroup]:
    """RLFN's feature spaces, for pruning its `channels`. Space 0 is written by conv_1 (the shallow features) and
    by conv_2 (the global skip adds them back), read by the upsampler; space k (1..n) is written by block_k's c5,
    gated by its ESA (conv4's mask) and read by its ESA's conv1. Space k (0..n-1) is block_k+1's input: read by
    its c1_r and c5, written by its c3_r (the local skip adds it to the input); space n is conv_2's input."""
    groups = []
    for k in range(blocks + 1):
        writers, readers, gates = [], [], []
        if k == 0:
            writers += ["conv_1", "conv_2"]
            readers.append("upsampler.0")
        else:
            writers.append(f"block_{k}.c5")
            gates.append(f"block_{k}.esa.conv4")
            readers.append(f"block_{k}.esa.conv1")
        if k < blocks:
            writers.append(f"block_{k + 1}.c3_r")
            readers += [f"block_{k + 1}.c1_r", f"block_{k + 1}.c5"]
        else:
            readers.append("conv_2")
        groups.append(pruning.ChannelGroup("shallow" if k == 0 else f"block_{k}", tuple(writers), tuple(readers),
                                           tuple(gates)))
    return groups


def prune_rlfn(model: RLFN, config: RLFNConfig, channels: int) -> tuple[RLFN, RLFNConfig]:
    """RLFN with `channels` feature channels (mid_channels and the ESA width kept), each feature space cut by
    L1 norm on its own, as ByteESR cut its NTIRE 2022 model from 48 to 46 channels."""
    state, _ = pruning.prune_state_dict(model.state_dict(), rlfn_channel_groups(config.blocks), channels)
    smaller = dataclasses.replace(config, channels=channels)
    like = next(model.parameters())
    net = RLFN(**dataclasses.asdict(smaller)).to(device=like.device, dtype=like.dtype).train(model.training)
    net.load_state_dict(state, strict=True)
    return net, smaller


# ofsoundof/NTIRE2022_ESR model_zoo/team04_rlfn.pth (RLFN_cut): same tensors, RFDN-style top-level names.
NTIRE_NAMES = ((re.compile(r"^fea_conv\."), "conv_1."), (re.compile(r"^B(\d+)\."), r"block_\1."),
               (re.compile(r"^LR_conv\."), "conv_2."))


def convert_rlfn(sd: StateDict) -> StateDict:
    """The NTIRE 2022 challenge layout (fea_conv / B1..B4 / LR_conv) onto bytedance/RLFN's names."""
    if "conv_1.weight" in sd or "fea_conv.weight" not in sd:
        return sd
    renamed = {}
    for key, tensor in sd.items():
        for pattern, replacement in NTIRE_NAMES:
            key = pattern.sub(replacement, key)
        renamed[key] = tensor
    return renamed


def _rlfn_weights(name: str, file: str, scale: int, sha256: str, params: int, variant: str,
                  reference_psnr: float, published=None, challenge: Challenge | None = None) -> Weights:
    return Weights(name=name, scale=scale, url=f"{RLFN_RAW}/{file}", sha256=sha256, license="Apache-2.0",
                   source=f"https://github.com/{RLFN_REPO}", params=params, variant=variant,
                   published=published or {}, reference_psnr=reference_psnr, challenge=challenge)


# Published: RLFN paper Table 1 (arXiv 2205.07514), via a secondary source; see shared research notes.
RLFN_X2_TABLE = {"Set5": (38.07, 0.9607), "Set14": (33.72, 0.9187), "B100": (32.22, 0.9000),
                 "Urban100": (32.33, 0.9299)}
RLFN_X4_TABLE = {"Set5": (32.24, 0.8952), "Set14": (28.62, 0.7813), "B100": (27.60, 0.7364),
                 "Urban100": (26.17, 0.7877)}

rlfn = Architecture(
    name="rlfn",
    tile_overlap=32,  # Set14 x4, tiles of 64: 0.05% of pixels differ by 1 level (16: up to 8 levels)
    min_size=15,  # ESA: stride-2 conv then a 7x7 max-pool with stride 3
    tile_grid=STRIDE,
    model=RLFN,
    config=RLFNConfig,
    detect=("conv_1.weight", "block_1.c1_r.weight", "block_1.esa.conv3.weight", "conv_2.weight",
            "upsampler.0.weight"),
    read_config=read_rlfn_config,
    prune=prune_rlfn,
    paper="Kong et al., Residual Local Feature Network for Efficient Super-Resolution, CVPRW 2022 (arXiv 2205.07514)",
    scales=(2, 3, 4),
    input_range=255.0,
    # Set5 change, weights converted (benchmarks/precision.py): 5 files: fp16 >= -0.0007 dB, bf16 >= -0.0152 dB
    precisions=("fp16", "bf16"),
    convert=convert_rlfn,
    weights=(
        _rlfn_weights("rlfn-x2", "rlfn_x2.pth", 2,
                      "eafe5d5feeb122022453595c06d79160facdc157ae88deb02a44c50f5eba2d41", 526856,
                      "paper (52 ch, 6 RLFB)", 38.0656, RLFN_X2_TABLE),
        _rlfn_weights("rlfn-x4", "rlfn_x4.pth", 4,
                      "8c7edb57dfc89048bafba29d591d4c27d4099964b4a9e22df23d6dc257a637c0", 543740,
                      "paper (52 ch, 6 RLFB)", 32.2379, RLFN_X4_TABLE),
        _rlfn_weights("rlfn-s-x2", "rlfn_s_x2.pth", 2,
                      "f5175f499f869c1b884c2552a1bcd6abd07ab352e3d8c8c9abe31b1deb60fe45", 454620,
                      "RLFN-S, paper (48 ch, 6 RLFB)", 38.0471),
        _rlfn_weights("rlfn-s-x4", "rlfn_s_x4.pth", 4,
                      "f769c5a88433786b2db0c2b24da6ca6c92a24c62344b9354a390f8a74388e89d", 470208,
                      "RLFN-S, paper (48 ch, 6 RLFB)", 32.2395),
        _rlfn_weights("rlfn-ntire22-x4", "rlfn_ntire_x4.pth", 4,
                      "3c9be7b9d7a4bece9b68c83a56a1ffb38010f76413d5f215be6b4be842e18fb2", 317218,
                      "NTIRE 2022 ESR winner RLFN_Prune (46 ch, mid 48, 4 RLFB)", 32.0973,
                      challenge=Challenge("NTIRE 2022 ESR", 2022, ranks={"runtime": 1}, team="ByteESR", params_m=0.317,
                                          flops_g=19.70, activations_m=80.05, convs=39, runtime_ms=27.11,
                                          memory_mb=377.91, val_psnr=29.00, test_psnr=28.72, gpu="Titan Xp", source="ofsoundof/NTIRE2022_ESR figs/results.png (official results table)")),
    ),
)

rfdn = Architecture(
    name="rfdn",
    tile_overlap=48,  # Set14 x4, tiles of 64: 0.05% of pixels differ by 1 level (32: 0.23%)
    min_size=15,  # ESA: stride-2 conv then a 7x7 max-pool with stride 3
    tile_grid=STRIDE,
    model=RFDN,
    config=RFDNConfig,
    detect=("fea_conv.weight", "B1.c1_d.weight", "B1.esa.conv_max.weight", "c.0.weight", "LR_conv.weight",
            "upsampler.0.weight"),
    read_config=read_rfdn_config,
    paper="Liu et al., Residual Feature Distillation Network for Lightweight Image Super-Resolution, ECCVW 2020",
    scales=(2, 3, 4),
    input_range=255.0,
    # Set5 change, weights converted (benchmarks/precision.py): fp16 -0.0001 dB, bf16 -0.0062 dB
    precisions=("fp16", "bf16"),
    weights=(
        Weights(name="rfdn-x4", scale=4,
                url="https://raw.githubusercontent.com/njulj/RFDN/7cf4e25b6633e81fd7e26891aeee2baca4f8f927/"
                    "trained_model/RFDN_AIM.pth",
                sha256="11af8ec8ebd68689e90ef1e29044f9804c72d3bd9f7573820b7b26035782760c", license="MIT",
                source="https://github.com/njulj/RFDN", params=433448,
                variant="AIM 2020 winner E-RFDN (50 ch, 4 RFDB)", reference_psnr=32.1589,
                challenge=Challenge("NTIRE 2022 ESR", 2022, team="reference (AIM 2020 winner)", params_m=0.433, flops_g=27.10,
                                    activations_m=112.03, convs=64, runtime_ms=41.97, memory_mb=788.13,
                                    val_psnr=29.04, test_psnr=28.75, gpu="Titan Xp", source="ofsoundof/NTIRE2022_ESR figs/results.png (official results table)")),
    ),
)

NTIRE22_REPO = "ofsoundof/NTIRE2022_ESR"
NTIRE22_FILES = f"https://raw.githubusercontent.com/{NTIRE22_REPO}/e95ba4a4916bb13d6348f7ee172827e2452e8a31/model_zoo"
NTIRE22_TABLE = f"{NTIRE22_REPO} figs/results.png (official results table)"


def _ntire22_weights(name: str, file: str, sha256: str, params: int, variant: str, reference_psnr: float,
                     challenge: Challenge) -> Weights:
    return Weights(name=name, scale=4, url=f"{NTIRE22_FILES}/{file}", sha256=sha256, license="MIT",
                   source=f"https://github.com/{NTIRE22_REPO}", params=params, variant=variant,
                   reference_psnr=reference_psnr, challenge=challenge)


def _ntire22(team: str, ranks: tuple[int, int, int], **figures) -> Challenge:
    """A row of the NTIRE 2022 ESR results table: ranks of the runtime (main), complexity and overall tracks."""
    return Challenge("NTIRE 2022 ESR", 2022, ranks=dict(zip(("runtime", "complexity", "overall"), ranks)), team=team,
                     gpu="Titan Xp", source=NTIRE22_TABLE, **figures)


# Same keys and shapes as an RFDN: an unknown file of this layout fits both, and names one with --arch; the
# challenge file is known by its sha256. Loaded into rfdn (with the residual) it gives 26.10 dB on Set5.
rfdn_prune = Architecture(
    name="rfdn-prune",
    tile_overlap=32,  # Set14 x4, tiles of 64: 0.05% of pixels differ by 1 level, none by more (48: 0.006%)
    min_size=15,  # ESA: stride-2 conv then a 7x7 max-pool with stride 3
    tile_grid=STRIDE,
    model=RFDN,
    config=RFDNPruneConfig,
    detect=rfdn.detect,
    read_config=functools.partial(read_rfdn_config, config=RFDNPruneConfig),
    paper="Li et al., NTIRE 2022 Challenge on Efficient Super-Resolution: Methods and Results, CVPRW 2022 (team MegSR: pruned RFDN)",
    scales=(2, 3, 4),
    input_range=255.0,
    # Set5 change, weights converted (benchmarks/precision.py): fp16 -0.0007 dB, bf16 -0.0012 dB
    precisions=("fp16", "bf16"),
    weights=(
        _ntire22_weights("rfdn-prune-ntire22-x4", "team40_rfdn_pruned.pth",
                         "f4b5ebb858957bd5a473711e78f0d20a545d7e3a0fbcb90c0548d89fd2852172", 289888,
                         "NTIRE 2022 ESR team MegSR (40 ch, 4 RFDB, ESA width 12)", 32.1452,
                         _ntire22("MegSR", (5, 9, 5), params_m=0.290, flops_g=17.70, activations_m=91.72, convs=64,
                                  runtime_ms=32.59, memory_mb=640.63, val_psnr=29.00, test_psnr=28.68)),
    ),
)

plainrfdn = Architecture(
    name="plainrfdn",
    tile_overlap=32,  # Set14 x4, tiles of 64: 0.06% of pixels differ by 1 level, none by more (24: 0.18%)
    min_size=5,  # ESA: a 7x7 max-pool with padding 1
    tile_grid=PARALLEL_STRIDE,
    model=PlainRFDN,
    config=PlainRFDNConfig,
    detect=("fea_conv.weight", "B1.c1_r.conv3x3.weight", "B1.esa.conv_23.weight", "LR_conv.weight",
            "upsampler.0.weight"),
    read_config=read_plainrfdn_config,
    train_build=train_plainrfdn,
    paper="Li et al., NTIRE 2022 Challenge on Efficient Super-Resolution: Methods and Results, CVPRW 2022 (team NEESR: PlainRFDN)",
    scales=(2, 3, 4),
    input_range=255.0,
    # Set5 change, weights converted (benchmarks/precision.py): fp16 -0.0005 dB, bf16 -0.0015 dB
    precisions=("fp16", "bf16"),
    weights=(
        _ntire22_weights("plainrfdn-ntire22-x4", "team05_efdn.pt",
                         "b1cfec0dd5eaef944f02d0ce6f3bb75667c7afd0f21b63afe1e4c22b16504b7e", 272038,
                         "NTIRE 2022 ESR team NEESR (42 ch, 4 blocks, 10 distilled ch)", 31.8548,
                         _ntire22("NEESR", (3, 4, 1), params_m=0.272, flops_g=16.86, activations_m=79.59, convs=59,
                                  runtime_ms=29.97, memory_mb=575.99, val_psnr=29.01, test_psnr=28.71)),
    ),
)

repafdn = Architecture(
    name="repafdn",
    tile_overlap=48,  # Set14 x4, tiles of 64: 0.016% of pixels differ by 1 level (32: 0.14%; 24: up to 9 levels)
    min_size=15,  # ESA: stride-2 conv then a 7x7 max-pool with stride 3
    tile_grid=STRIDE,
    model=RePAFDN,
    config=RePAFDNConfig,
    detect=("fea_conv.weight", "B1.c1_d.weight", "B1.esa.conv_max.weight", "c.0.weight", "pa.conv.weight",
            "upsampler.0.weight"),
    read_config=read_repafdn_config,
    paper="Li et al., NTIRE 2022 Challenge on Efficient Super-Resolution: Methods and Results, CVPRW 2022 (team Super: RePAFDN)",
    scales=(2, 3, 4),
    input_range=1.0,
    # Set5 change, weights converted (benchmarks/precision.py): fp16 -0.0002 dB, bf16 -0.0045 dB
    precisions=("fp16", "bf16"),
    weights=(
        _ntire22_weights("repafdn-ntire22-x4", "team10_repafdn.pth",
                         "ff9392bf08b0178da9a225a7efdb495156b60021ef69f260f28d68236141e33b", 326040,
                         "NTIRE 2022 ESR team Super (48 ch, 3 FDB_S + 1 FDB, PA)", 32.1378,
                         _ntire22("Super", (4, 12, 10), params_m=0.326, flops_g=20.06, activations_m=93.82,
                                  convs=59, runtime_ms=32.09, memory_mb=663.07, val_psnr=29.00, test_psnr=28.71)),
    ),
)
