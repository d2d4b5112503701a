"""esr plugin: SPAN, the NTIRE 2024 ESR winner, and the SPAN lineage of NTIRE 2025 and 2026 (SPAN-F, ESPAN, SPANV2),
all as their re-parameterised (deployed) graphs."""

from __future__ import annotations

import dataclasses

from esr_cli import Architecture, Challenge, StateDict, Weights, count_blocks, reparam, shuffle_scale

from .espan import ESPAN, ESPANConfig
from .span import SPAN, SPANConfig
from .spanf import SPANF, SPANFConfig
from .spanv2 import SPANV2, SPANV2Config

__all__ = ["span", "spanf", "espan", "spanv2", "SPAN", "SPANConfig", "SPANF", "SPANFConfig", "ESPAN", "ESPANConfig",
           "SPANV2", "SPANV2Config"]

PAPER = ("Wan et al., Swift Parameter-free Attention Network for Efficient Super-Resolution, CVPRW 2024 "
         "(arXiv 2311.12770)")
NTIRE24 = ("Amazingren/NTIRE2024_ESR", "6404fa48dde4a4adbf241a51debdc661aef20449")
NTIRE25 = ("Amazingren/NTIRE2025_ESR", "b69fb668c0362deb696eecbfdebfaa5c2fcdfcb4")
NTIRE26 = ("Amazingren/NTIRE2026_ESR", "4592ce6db68b395699f13e7e2a4e3baf317ef1c6")
NTIRE26_TABLE = "Amazingren/NTIRE2026_ESR results.txt @4592ce6d (organisers' table, 5-run average)"
UNREACHED = "per-team figures are in the challenge report's Table 1 ({}), not reachable here"


def read_span(sd: StateDict, scale: int | None = None) -> SPANConfig:
    return SPANConfig(channels=sd["conv_1.eval_conv.weight"].shape[0], blocks=count_blocks(sd, "block_"),
                      scale=shuffle_scale(sd["upsampler.0.weight"].shape[0]))


def read_spanf(sd: StateDict, scale: int | None = None) -> SPANFConfig:
    return SPANFConfig(channels=sd["block_1.c1_r.eval_conv.weight"].shape[0], blocks=count_blocks(sd, "block_"),
                       scale=shuffle_scale(sd["conv_near.weight"].shape[0]))


def read_espan(sd: StateDict, scale: int | None = None) -> ESPANConfig:
    return ESPANConfig(channels=sd["conv_1.eval_conv.weight"].shape[0],
                       mid_channels=sd["block_1.c1_r.eval_conv.weight"].shape[0], blocks=count_blocks(sd, "block_"),
                       scale=shuffle_scale(sd["tea_upsampler.0.eval_conv.weight"].shape[0]))


def read_spanv2(sd: StateDict, scale: int | None = None) -> SPANV2Config:
    return SPANV2Config(channels=sd["block_1.c1.conv.weight"].shape[0], blocks=count_blocks(sd, "block_"),
                        scale=shuffle_scale(sd["pointwise_conv.weight"].shape[0]))


def train_span(config: SPANConfig) -> SPAN:
    """SPAN as its authors train it: every Conv3XC (`*.eval_conv`) is 1x1 -> 3x3 -> 1x1 at gain 2 plus a 1x1 skip."""
    return reparam.expand(SPAN(**dataclasses.asdict(config)), reparam.Conv3XC,
                          lambda name, conv: name.endswith("eval_conv"))


def _weights(name: str, repo: tuple[str, str], file: str, sha256: str, params: int, variant: str,
             reference_psnr: float, challenge: Challenge) -> Weights:
    """The organisers' collections are MIT; the teams attach no licence of their own to the weights."""
    return Weights(name=name, scale=4, url=f"https://raw.githubusercontent.com/{repo[0]}/{repo[1]}/model_zoo/{file}",
                   sha256=sha256, license="MIT", source=f"https://github.com/{repo[0]}", params=params,
                   variant=variant, reference_psnr=reference_psnr, challenge=challenge)


span = Architecture(
    name="span",
    model=SPAN,
    config=SPANConfig,
    detect=("conv_1.eval_conv.weight", "block_1.c1_r.eval_conv.weight", "conv_cat.weight", "conv_2.eval_conv.weight",
            "upsampler.0.weight"),
    read_config=read_span,
    train_build=train_span,
    # Set5 change, weights converted (benchmarks/precision.py): 3 files: fp16 >= -0.0010 dB, bf16 >= -0.0337 dB
    precisions=("fp16", "bf16"),
    paper=PAPER,
    weights=(
        _weights("span-ntire24-x4", NTIRE24, "team38_span_ch28_slim.pth",
                 "6c80f05048313289c6526e5fc9726688d7bb3dfdd6ae3c8b1e7dd09f601e5971", 150_688,
                 "NTIRE 2024 ESR winner (team38, 28 ch, 6 SPAB); the NTIRE 2026 baseline", 31.739,
                 Challenge("NTIRE 2024 ESR", 2024, ranks={"overall": 1}, team="XiaomiMM", params_m=0.151,
                           flops_g=9.83, activations_m=41.68, convs=22, runtime_ms=7.74, memory_mb=705.24,
                           gpu="RTX A6000", val_psnr=26.94, test_psnr=27.01,
                           source=f"rank: hongyuanyu/SPAN README; figures: {NTIRE26_TABLE}, row 00_SPAN",
                           note="the figures are the NTIRE 2026 organisers' re-measurement of this same file "
                                "(their baseline), not the NTIRE 2024 table (RTX 3090, arXiv 2404.10343 Table 1, "
                                "not reachable here)")),
        _weights("span-tiny-ntire24-x4", NTIRE24, "team39_spantiny_ch26_slim.pth",
                 "30bf224aee5d3fb9cbc7a3bf164a294f957f65c45f5b271052947097922040a5", 130_828,
                 "NTIRE 2024 ESR team39 SPAN-tiny (26 ch, 6 SPAB)", 31.7388,
                 Challenge("NTIRE 2024 ESR", 2024, team="team39 (SPAN code; team name not confirmed)",
                           source="Amazingren/NTIRE2024_ESR model_zoo: the entry only; "
                                  + UNREACHED.format("arXiv 2404.10343"))),
        _weights("dscf-ntire25-x4", NTIRE25, "team23_DSCF.pth",
                 "239e76bc4e4e738491c3963805c0a79f524400acf5fbde34b2cb1a855dd62cb1", 130_828,
                 "NTIRE 2025 ESR team23 DSCF/DSCLoRA: SPAN-tiny's graph, merged ConvLoRA + distillation", 31.7462,
                 Challenge("NTIRE 2025 ESR", 2025, ranks={"overall": 1}, team="team23 DSCF (SJTU)", params_m=0.131,
                           flops_g=8.54, activations_m=38.93, convs=22, runtime_ms=8.37, memory_mb=728.41,
                           gpu="not stated (the team's run of the official test_demo.py)", val_psnr=26.92,
                           source="rank: Yaozzz666/DSCF-SR README and arXiv 2504.11271; figures: Yaozzz666/DSCF-SR "
                                  "results.txt @dfa5803d (self-reported, DIV2K_LSDIR_valid; runtime of valid only)")),
    ),
)

spanf = Architecture(
    name="spanf",
    model=SPANF,
    config=SPANFConfig,
    detect=("conv_near.weight", "block_1.c1_r.eval_conv.weight", "conv_cat.weight", "conv_2.eval_conv.weight"),
    read_config=read_spanf,
    # Set5 change, weights converted (benchmarks/precision.py): fp16 -0.0018 dB, bf16 -0.0119 dB
    precisions=("fp16", "bf16"),
    paper="SPAN-F, NTIRE 2025 ESR team24 (SPAN lineage; " + PAPER + ")",
    weights=(
        _weights("spanf-ntire25-x4", NTIRE25, "team24_spanf.pth",
                 "1508c566008654646bea1edff537c83dd7a6fe8f6ffda3f25f9eb7ba09cbbcd3", 148_288,
                 "NTIRE 2025 ESR team24 SPAN-F (32 ch, 5 SPAB, nearest-neighbour shortcut)", 31.7748,
                 Challenge("NTIRE 2025 ESR", 2025, ranks={"overall": 2}, team="XiaomiMM (third-party attribution)",
                           source="rank and team: third-party material only; " + UNREACHED.format("arXiv 2504.10686"),
                           note="rank 2 and the team are not verified against the report's table")),
    ),
)

espan = Architecture(
    name="espan",
    model=ESPAN,
    config=ESPANConfig,
    detect=("conv_1.eval_conv.weight", "block_1.c1_r.eval_conv.weight", "teacher_block_seq.c1_r.eval_conv.weight",
            "tea_conv_cat.weight", "tea_upsampler.0.eval_conv.weight"),
    read_config=read_espan,
    # Set5 change, weights converted (benchmarks/precision.py): fp16 -0.0005 dB, bf16 -0.0161 dB
    precisions=("fp16", "bf16"),
    paper="Wang et al., Expanded SPAN for Efficient Super-Resolution, CVPRW 2025 (NTIRE 2025 ESR team36)",
    weights=(
        _weights("espan-ntire25-x4", NTIRE25, "team36_espan.pth",
                 "f54d2668aef25cd490ff0ced3c47ba2978fa7cb341264a5339b239ef602ea59c", 192_272,
                 "NTIRE 2025 ESR team36 ESPAN (9x9 stem, 32 ch, 5 SPAB + a two-conv SPAB)", 31.9408,
                 Challenge("NTIRE 2025 ESR", 2025, team="team36 ESPAN",
                           source="Amazingren/NTIRE2025_ESR model_zoo: the entry only; "
                                  + UNREACHED.format("arXiv 2504.10686"))),
    ),
)

spanv2 = Architecture(
    name="spanv2",
    model=SPANV2,
    config=SPANV2Config,
    detect=("block_1.c1.conv.weight", "block_2.guidance_map_conv.weight", "conv_near.weight", "depthwise_conv.weight",
            "pointwise_conv.weight"),
    read_config=read_spanv2,
    # Set5 change, weights converted (benchmarks/precision.py): fp16 -0.0018 dB, bf16 -0.0111 dB
    precisions=("fp16", "bf16"),
    paper="SPANV2, NTIRE 2026 ESR team22 XiaomiMM (SPAN lineage; " + PAPER + ")",
    weights=(
        _weights("spanv2-ntire26-x4", NTIRE26, "team22_spanv2_c2.pth",
                 "fca2743272b8a7fb32931ed3287454173c7d209f204cb2f58084ee868414d371", 139_104,
                 "NTIRE 2026 ESR team22 SPANV2 C2 (32 ch, 5 blocks, guidance-map attention)", 31.7681,
                 Challenge("NTIRE 2026 ESR", 2026, team="team22 XiaomiMM", params_m=0.139, flops_g=1.59,
                           activations_m=42.99, convs=18, runtime_ms=5.24, memory_mb=417.51, gpu="RTX A6000",
                           val_psnr=26.92, test_psnr=27.00, source=f"{NTIRE26_TABLE}, row 22_SPANV2_ESR_C2",
                           note="FLOPs, activations and #conv are those of the model run with the team's CUDA "
                                "attention op: the op allocates its output with at::empty_like(x), so fvcore's trace "
                                "drops blocks 2-5 (1.59 G = block_1 + tail) and the Conv2d hooks miss the 4 guidance "
                                "1x1 convs (42.99 M, 18); this pure-PyTorch graph gives 9.11 G / 51.38 M / 22 with "
                                "fvcore and complexity() alike. No rank is published in the sources seen (the "
                                "README's scoring of results.txt puts it 1st)")),
    ),
)
