"""esr plugin: FMEN, the fast and memory-efficient network (NJU_Jet, NTIRE 2022 ESR runtime #2)."""

from __future__ import annotations

import re

from esr_cli import Architecture, Challenge, StateDict, Weights, count_blocks, shuffle_scale

from .fmen import FMEN, FMENConfig

__all__ = ["fmen", "FMEN", "FMENConfig"]

NTIRE22_REPO = "ofsoundof/NTIRE2022_ESR"
NTIRE22_FILES = f"https://raw.githubusercontent.com/{NTIRE22_REPO}/e95ba4a4916bb13d6348f7ee172827e2452e8a31/model_zoo"


def read_config(sd: StateDict, scale: int | None = None) -> FMENConfig:
    return FMENConfig(
        channels=sd["head.weight"].shape[0],
        mid_channels=sd["hfabs.0.squeeze.weight"].shape[0],
        warmup_mid_channels=sd["warmup.1.squeeze.weight"].shape[0],
        warmup_erbs=count_blocks(sd, "warmup.1.convs"),
        stage_erbs=tuple(count_blocks(sd, f"hfabs.{i}.convs") for i in range(count_blocks(sd, "hfabs"))),
        scale=shuffle_scale(sd["tail.0.weight"].shape[0]),  # 3 * scale**2
    )


# NJU-Jet/FMEN test_fmen.py: the same deploy graph with the stages' lists named ERBs / HFABs.
NJU_JET_NAMES = ((re.compile(r"^ERBs\."), "basic_blocks."), (re.compile(r"^HFABs\."), "hfabs."))


def convert(sd: StateDict) -> StateDict:
    """NJU-Jet/FMEN's names (ERBs.i / HFABs.i) onto the challenge layout (basic_blocks.i / hfabs.i)."""
    if "ERBs.0.conv1.rep_conv.weight" not in sd:
        return sd
    renamed = {}
    for key, tensor in sd.items():
        for pattern, replacement in NJU_JET_NAMES:
            key = pattern.sub(replacement, key)
        renamed[key] = tensor
    return renamed


fmen = Architecture(
    name="fmen",
    model=FMEN,
    config=FMENConfig,
    detect=("head.weight", "warmup.0.weight", "warmup.1.squeeze.weight", "basic_blocks.0.conv1.rep_conv.weight",
            "hfabs.0.squeeze.weight", "hfabs.0.excitate.weight", "lr_conv.weight", "tail.0.weight"),
    read_config=read_config,
    paper="Du et al., Fast and Memory-Efficient Network Towards Efficient Image Super-Resolution, CVPRW 2022 "
          "(arXiv 2204.08397)",
    scales=(2, 3, 4),
    input_range=255.0,
    # Set5 change, weights converted (benchmarks/precision.py): bf16 -0.0132 dB. No fp16: inside the HFABs features
    # grow unnormalised up to the excitation conv (which holds the folded batch norms), to 1.8e7 in the warm-up on
    # Set5 baby, past fp16's 65504; all five Set5 images overflow in fp16 and are rerun in fp32.
    precisions=("bf16",),
    tile_overlap=16,  # Set14 x4, tiles of 64: 0.04% of pixels differ by 1 level, none by more (8: up to 3 levels)
    convert=convert,
    weights=(
        Weights(name="fmen-s-ntire22-x4", scale=4, url=f"{NTIRE22_FILES}/team03_fmen.pth",
                sha256="f20cde0828068c5f50d3b64aa82c8a363fe6abc8d536d1a9fd4d09899f019bea", license="MIT",
                source=f"https://github.com/{NTIRE22_REPO}", params=341066,
                variant="FMEN-S, NTIRE 2022 ESR entry (50 ch, mid 16, 4 stages), re-parameterised",
                reference_psnr=32.0289,
                challenge=Challenge("NTIRE 2022 ESR", 2022, ranks={"runtime": 2, "complexity": 18, "overall": 6},
                                    team="NJU_Jet", params_m=0.341, flops_g=22.28, activations_m=72.09, convs=34,
                                    runtime_ms=28.07, memory_mb=204.6, gpu="Titan Xp", val_psnr=29.00,
                                    test_psnr=28.69,
                                    source="ofsoundof/NTIRE2022_ESR figs/results.png (official results table)")),
    ),
)
