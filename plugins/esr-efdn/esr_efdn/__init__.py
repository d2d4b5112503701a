"""esr plugin: EFDN (NTIRE 2022 ESR, the NTIRE 2025 ESR baseline) and PFDNLite (NTIRE 2024 ESR) by Yan Wang."""

from __future__ import annotations

from esr_cli import Architecture, Challenge, StateDict, Weights, count_blocks, shuffle_scale

from .efdn import EFDN, EFDNConfig
from .efdn import STRIDE as EFDN_STRIDE
from .pfdnlite import MIN_SIZE as PFDNLITE_MIN_SIZE
from .pfdnlite import STRIDE as PFDNLITE_STRIDE
from .pfdnlite import PFDNLite, PFDNLiteConfig

__all__ = ["efdn", "pfdnlite", "EFDN", "EFDNConfig", "PFDNLite", "PFDNLiteConfig"]

NTIRE22_REPO = "ofsoundof/NTIRE2022_ESR"
NTIRE24_REPO = "Amazingren/NTIRE2024_ESR"
NTIRE22_TABLE = "ofsoundof/NTIRE2022_ESR figs/results.png (official results table)"


def read_efdn_config(sd: StateDict, scale: int | None = None) -> EFDNConfig:
    return EFDNConfig(channels=sd["head.weight"].shape[0], scale=shuffle_scale(sd["tail.0.weight"].shape[0]))


def read_pfdnlite_config(sd: StateDict, scale: int | None = None) -> PFDNLiteConfig:
    blocks = range(1, count_blocks(sd, "block") + 1)
    return PFDNLiteConfig(channels=sd["head.weight"].shape[0],
                          pruned=tuple(f"block{i}.conv2.weight" not in sd for i in blocks),
                          scale=shuffle_scale(sd["tail.0.weight"].shape[0]))


efdn = Architecture(
    name="efdn",
    model=EFDN,
    config=EFDNConfig,
    detect=("head.weight", "cells.0.conv1.conv1x1.weight", "cells.0.conv2.rep_conv.weight",
            "cells.0.att.conv_max.weight", "local_fuse.0.weight", "tail.0.weight"),
    read_config=read_efdn_config,
    paper="Wang, Edge-enhanced Feature Distillation Network for Efficient Super-Resolution, CVPRW 2022 "
          "(arXiv 2204.08759)",
    input_range=1.0,
    min_size=15,  # ESA: stride-2 conv then a 7x7 max-pool with stride 3
    tile_grid=EFDN_STRIDE,
    tile_overlap=32,  # Set14 x4, tiles of 64: 0.06% of pixels differ by 1 level (16: up to 22 levels)
    # Set5 change, weights converted (benchmarks/precision.py): fp16 -0.0002 dB, bf16 -0.0085 dB
    precisions=("fp16", "bf16"),
    weights=(
        Weights(name="efdn-x4", scale=4,
                url="https://raw.githubusercontent.com/ofsoundof/NTIRE2022_ESR/"
                    "e95ba4a4916bb13d6348f7ee172827e2452e8a31/model_zoo/team01_efdn.pth",
                sha256="71069f10ef234cd123f45ac8e69099f0a1fdc0c16afcfe2189e50071d47ce477", license="MIT",
                source=f"https://github.com/{NTIRE22_REPO}", params=276192,
                variant="NTIRE 2022 ESR team01 NKU-ESR, deploy form (48 ch, 4 cells); the NTIRE 2025 ESR baseline",
                reference_psnr=32.0758,
                challenge=Challenge("NTIRE 2022 ESR", 2022, ranks={"runtime": 9, "complexity": 5, "overall": 7},
                                    team="NKU-ESR", params_m=0.276, flops_g=16.73, activations_m=111.12, convs=65,
                                    runtime_ms=34.81, memory_mb=662.51, gpu="Titan Xp", val_psnr=29.00,
                                    test_psnr=28.66, source=NTIRE22_TABLE)),
    ),
)

pfdnlite = Architecture(
    name="pfdnlite",
    model=PFDNLite,
    config=PFDNLiteConfig,
    detect=("head.weight", "block1.attn.body.0.weight", "block1.conv1.weight", "block1.conv3.weight",
            "tail.0.weight"),
    read_config=read_pfdnlite_config,
    paper="Wang et al., Lightening Partial Feature Distillation Network for Efficient Super-Resolution "
          "(NTIRE 2024 ESR, team01)",
    input_range=1.0,
    min_size=PFDNLITE_MIN_SIZE,
    tile_grid=PFDNLITE_STRIDE,
    tile_overlap=32,  # Set14 x4, tiles of 64: 0.01% of pixels differ by 1 level (16: up to 3 levels)
    # Set5 change, weights converted (benchmarks/precision.py): fp16 -0.0001 dB, bf16 -0.0177 dB
    precisions=("fp16", "bf16"),
    weights=(
        Weights(name="pfdnlite-x4", scale=4,
                url="https://raw.githubusercontent.com/Amazingren/NTIRE2024_ESR/"
                    "6404fa48dde4a4adbf241a51debdc661aef20449/model_zoo/team01_pfdnlite.pth",
                sha256="7823f76309249154ff5909ef99cf8601c3e768d80515a21624a9d9539984c4ee", license="MIT",
                source=f"https://github.com/{NTIRE24_REPO}", params=218288,
                variant="NTIRE 2024 ESR team01 (48 ch, 4 blocks, the middle two pruned)",
                reference_psnr=32.047,
                challenge=Challenge("NTIRE 2024 ESR", 2024, ranks={"overall": 3, "runtime": 3},
                                    team="team01 (Yan Wang et al., Nankai University / ByteDance)",
                                    source="icandle/PlainUSR README (ranks only; the per-team figures are in the "
                                           "challenge report's Table 1, arXiv 2404.10343, not reachable here)")),
    ),
)
