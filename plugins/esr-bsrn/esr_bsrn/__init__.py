"""esr plugin: BSRN-S, the NTIRE 2022 ESR variant of the Blueprint Separable Residual Network (XPixel)."""

from __future__ import annotations

from esr_cli import Architecture, Challenge, StateDict, Weights, count_blocks, shuffle_scale

from .bsrn import BSRNS, ESA_STRIDE, BSRNSConfig

__all__ = ["bsrn_s", "BSRNS", "BSRNSConfig"]

NTIRE22_REPO = "ofsoundof/NTIRE2022_ESR"
NTIRE22_FILES = f"https://raw.githubusercontent.com/{NTIRE22_REPO}/e95ba4a4916bb13d6348f7ee172827e2452e8a31/model_zoo"


def read_config(sd: StateDict, scale: int | None = None) -> BSRNSConfig:
    return BSRNSConfig(
        channels=sd["fea_conv.pw.weight"].shape[0],
        blocks=count_blocks(sd, "B"),
        scale=shuffle_scale(sd["upsampler.upsampleOneStep.0.weight"].shape[0]),  # 3 * scale**2
    )


bsrn_s = Architecture(
    name="bsrn-s",
    model=BSRNS,
    config=BSRNSConfig,
    # 2-D pointwise weights and the per-block scale `cw` set this layout apart from the paper's BSRN (4-D, no cw)
    detect=("fea_conv.pw.weight", "fea_conv.dw.weight", "B1.cw", "B1.c1_r.pw.weight", "B1.esa.conv_max.pw.weight",
            "B1.conv_out.weight", "c1.weight", "c2.pw.weight", "upsampler.upsampleOneStep.0.weight"),
    read_config=read_config,
    paper="Li et al., Blueprint Separable Residual Network for Efficient Image Super-Resolution, CVPRW 2022 "
          "(arXiv 2205.05996): BSRN-S, the NTIRE 2022 ESR entry",
    scales=(2, 3, 4),
    input_range=1.0,
    # Set5 change, weights converted (benchmarks/precision.py): fp16 -0.0008 dB, bf16 -0.0247 dB
    precisions=("fp16", "bf16"),
    min_size=15,  # ESA: a 3x3 conv with stride 2, unpadded, then a 7x7 max-pool with stride 3
    tile_grid=ESA_STRIDE,
    tile_overlap=32,
    weights=(
        Weights(name="bsrn-s-ntire22-x4", scale=4, url=f"{NTIRE22_FILES}/team18_bsrn.pth",
                sha256="29ac393975ec709912282da97765daf722d9efd40589f4abcb95b3a407f62e40", license="MIT",
                source=f"https://github.com/{NTIRE22_REPO}", params=156_288,
                variant="NTIRE 2022 ESR team18 XPixel (48 ch, 5 ESDB)", reference_psnr=32.0099,
                challenge=Challenge("NTIRE 2022 ESR", 2022, ranks={"complexity": 1, "overall": 8, "runtime": 27},
                                    team="XPixel", params_m=0.156, flops_g=9.5, activations_m=65.76, convs=43,
                                    runtime_ms=140.47, memory_mb=729.94, gpu="Titan Xp", val_psnr=29.01,
                                    test_psnr=28.69,
                                    source="ofsoundof/NTIRE2022_ESR figs/results.png (official results table)")),
    ),
)
