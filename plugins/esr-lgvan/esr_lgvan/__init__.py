"""esr plugin: LGVAN (NTIRE 2023 efficient SR, team18)."""

from __future__ import annotations

from dataclasses import dataclass

from esr_cli import Architecture, Challenge, StateDict, Weights, count_blocks, shuffle_scale

from .lgvan import LGVAN

__all__ = ["LGVANConfig", "lgvan"]


@dataclass(frozen=True)
class LGVANConfig:
    num_feat: int = 32
    num_block: int = 9
    scale: int = 4


def read_config(sd: StateDict, scale: int | None = None) -> LGVANConfig:
    num_feat = sd["conv_first.weight"].shape[0]
    two_stages = "upsapling.2.weight" in sd
    read = 4 if two_stages else shuffle_scale(sd["upsapling.0.weight"].shape[0], num_feat)
    return LGVANConfig(num_feat=num_feat, num_block=count_blocks(sd, "layers"), scale=read)


lgvan = Architecture(
    name="lgvan",
    tile_overlap=32,  # Set14 x4, tiles of 64: 0.05% of pixels differ by 1 level (16: up to 3 levels)
    min_size=5,  # the 1x5 / 5x1 depth-wise pairs pad on the other axis (as the authors trained it)
    model=LGVAN,
    config=LGVANConfig,
    detect=("conv_first.weight", "layers.0.atten.spatial_gating_unit.conv_v_2.weight", "layers.0.MLP.dwconv.weight",
            "conv_after_body.weight", "upsapling.0.weight", "conv_last.weight"),
    read_config=read_config,
    paper="LGVAN: Local-Global Visual Attention Network, NTIRE 2023 Efficient SR Challenge factsheet (team18)",
    scales=(2, 3, 4),
    input_range=1.0,
    weights=(
        Weights(
            name="lgvan-x4",
            scale=4,
            url="https://raw.githubusercontent.com/charonf/LGVAN-NTIRE2023-ESR/"
                "a6fa8ffe96a61ce3d44941fdcb1b90ad17303cf4/model_zoo/team18_LGVAN.pth",
            sha256="fe201971de6fb18e62fd17d7c10817cf406d68b7aa2adb5f00474a066b05e0ec",
            license="MIT",
            source="https://github.com/charonf/LGVAN-NTIRE2023-ESR",
            params=118243,
            variant="NTIRE 2023 ESR team18 (32 ch, 9 LGAB)",
            reference_psnr=32.1961,
            challenge=Challenge("NTIRE 2023 ESR", 2023, team="team18 LGVAN", params_m=0.118, flops_g=9.06,
                                activations_m=332.39, convs=122, runtime_ms=80.19, memory_mb=1114.77,
                                gpu="the team's own GPU (official script)", val_psnr=29.00,
                                source="charonf/LGVAN-NTIRE2023-ESR results.txt"),
        ),
    ),
)
